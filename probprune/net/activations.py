"""The one activation table (THEORY §1.2, hypothesis H-act): each coordinate-wise activation by name, with its
Lipschitz constant and the facts the bounds need. The graph's ops, the tracer and the law templates all read it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probprune.core.errors import ProbPruneError


@dataclass(frozen=True)
class Activation:
    """A coordinate-wise activation: its Lipschitz constant and the facts the bounds need (§1.2).

    The one activation table of the package: ``numpy(x)``, ``torch(x)`` (a tensor function, batched) and
    ``module()`` (a fresh ``nn.Module``) are the only dispatches on the name; ``ACTIVATIONS`` lists the names and
    :func:`activation` resolves aliases. Everything else (Monte Carlo forward passes, reference models, to_torch)
    calls these."""

    name: str
    lipschitz: float
    value_at_zero: float = 0.0
    positively_homogeneous: bool = True
    slope: float | None = None  # leaky ReLU negative slope
    linear: bool = False  # sigma(x) = x (the identity): the network is linear in its input

    @property
    def is_identity(self) -> bool:
        """sigma is the identity (THEORY §6: a net of such layers is the product of its matrices)."""
        return self.linear

    @property
    def zero_at_zero(self) -> bool:
        return self.value_at_zero == 0.0

    def numpy(self, x: np.ndarray) -> np.ndarray:
        return _ACT_IMPL[self.name][0](x, self.slope)

    def torch(self, x):
        """sigma applied to a torch tensor (any shape, batched)."""
        return _ACT_IMPL[self.name][1](x, self.slope)

    def module(self):
        """A fresh ``torch.nn`` module computing sigma."""
        return _ACT_IMPL[self.name][2](self.slope)

    def torch_module(self):  # kept name (to_torch and older callers)
        return self.module()


def _nn(cls_name: str, *args):
    import torch.nn as nn

    return getattr(nn, cls_name)(*args)


def _tf(fn_name: str, with_slope: bool = False):
    """torch.nn.functional.<fn_name>(x), or (x, slope) for the activations that take one (leaky_relu)."""

    def f(x, slope=None):
        import torch.nn.functional as F

        return getattr(F, fn_name)(x, slope) if with_slope else getattr(F, fn_name)(x)

    return f


#: name -> (numpy function, torch function, module factory); each takes the leaky-ReLU slope (ignored elsewhere)
_ACT_IMPL = {
    "identity": (lambda x, a: x, lambda x, a: x, lambda a: _nn("Identity")),
    "relu": (lambda x, a: np.maximum(x, 0.0), _tf("relu"), lambda a: _nn("ReLU")),
    "leaky_relu": (lambda x, a: np.where(x >= 0, x, a * x),
                   _tf("leaky_relu", with_slope=True),
                   lambda a: _nn("LeakyReLU", a)),
    "tanh": (lambda x, a: np.tanh(x), _tf("tanh"), lambda a: _nn("Tanh")),
    "hardtanh": (lambda x, a: np.clip(x, -1.0, 1.0), _tf("hardtanh"), lambda a: _nn("Hardtanh")),
    "sigmoid": (lambda x, a: 1.0 / (1.0 + np.exp(-x)), _tf("sigmoid"), lambda a: _nn("Sigmoid")),
}
#: canonical activation names (the registry's "activation" kind); aliases in ``ACTIVATION_ALIASES``
ACTIVATIONS: tuple[str, ...] = tuple(_ACT_IMPL)
ACTIVATION_ALIASES = {"linear": "identity", "none": "identity", "leakyrelu": "leaky_relu"}


#: name -> the Activation for a leaky-ReLU slope (the facts of §1.2: Lipschitz constant, sigma(0), homogeneity)
_ACT_FACTS = {
    "identity": lambda slope: Activation("identity", 1.0, linear=True),
    "relu": lambda slope: Activation("relu", 1.0),
    "leaky_relu": lambda slope: Activation("leaky_relu", max(1.0, abs(slope)), slope=float(slope)),
    "tanh": lambda slope: Activation("tanh", 1.0, positively_homogeneous=False),
    "hardtanh": lambda slope: Activation("hardtanh", 1.0, positively_homogeneous=False),
    "sigmoid": lambda slope: Activation("sigmoid", 0.25, value_at_zero=0.5, positively_homogeneous=False),
}


def activation(name: str, slope: float = 0.01) -> Activation:
    """Activation by name: identity, relu, leaky_relu (slope a: L = max(1, |a|)), tanh, hardtanh, sigmoid."""
    key = str(name).lower().replace("-", "_")
    key = ACTIVATION_ALIASES.get(key, key)
    if key not in _ACT_FACTS:
        raise ProbPruneError(f"unknown activation {name!r}; supported: {', '.join(ACTIVATIONS)}")
    return _ACT_FACTS[key](slope)
