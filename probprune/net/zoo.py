"""Small reference models as plain ``nn.Sequential`` chains (readable by :func:`probprune.net.templates.from_torch`).

* :func:`lenet_300_100`: the LTH paper's fully-connected LeNet-300-100 (784-300-100-10, ReLU; 266,200 weights).
* :func:`lenet5`: a LeNet-5-like conv net for 28x28 (conv5x5x6, pool, conv5x5x16, pool, FC 120-84-10) and, via
  ``input_shape=(1, 8, 8)``, a 3x3 variant that fits 8x8 digits.
* :func:`conv2`: a narrow Conv-2 (two 3x3 convs, one 2x2 max-pool, FC 256-256-10 in the LTH paper; default widths
  here are reduced for CPU: channels 16, FC 64).
* :func:`mlp`: any width list.

Parameter names are ``"<index>.weight"`` / ``"<index>.bias"`` (state_dict keys), which masks use as FQNs.
Initialisation is torch's default (Kaiming-uniform) unless ``seed`` is given, in which case it runs under a
forked RNG seeded with ``seed`` (the caller's global torch RNG is left untouched).
"""
from __future__ import annotations

import contextlib
from typing import Sequence

from probprune.core.errors import ProbPruneError, check_widths
from probprune.net.activations import activation as networks_activation

MODELS = ("lenet_300_100", "lenet5", "conv2", "mlp")


@contextlib.contextmanager
def _seeded(seed: int | None):
    import torch

    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def mlp(widths: Sequence[int], bias: bool = True, activation: str = "relu", seed: int | None = None):
    """Fully-connected ``Linear, act, Linear, act, ..., Linear`` with the given widths (input first)."""
    import torch.nn as nn

    w = check_widths(widths)
    act = networks_activation(activation)  # the one activation table (probprune.net.templates)
    with _seeded(seed):
        mods: list = []
        for i in range(1, len(w)):
            mods.append(nn.Linear(w[i - 1], w[i], bias=bias))
            if i < len(w) - 1:
                mods.append(act.module())
        return nn.Sequential(*mods)


def lenet_300_100(bias: bool = True, n_in: int = 784, n_classes: int = 10, seed: int | None = None):
    """LeNet-300-100 (LTH paper, Frankle & Carbin 2019): n_in-300-100-n_classes, ReLU. Flat input."""
    return mlp((n_in, 300, 100, n_classes), bias=bias, seed=seed)


def _check_image_shape(input_shape) -> tuple[int, int, int]:
    try:
        c, h, w = (int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise ProbPruneError(f"conv nets need input_shape=(C, H, W), got {input_shape!r}") from None
    return c, h, w


def lenet5(input_shape=(1, 28, 28), n_classes: int = 10, bias: bool = True, seed: int | None = None):
    """LeNet-5-like conv net. 28x28: conv5(6)-relu-pool2-conv5(16)-relu-pool2-FC120-FC84-FC10 (no padding).
    Small inputs (H or W < 28, e.g. 8x8 digits): conv3(6, pad 1)-relu-pool2-conv3(16, pad 1)-relu-pool2-FC120-84."""
    import torch.nn as nn

    c, h, w = _check_image_shape(input_shape)
    if min(h, w) >= 28:
        k, p = 5, 0
    elif min(h, w) >= 4:
        k, p = 3, 1
    else:
        raise ProbPruneError(f"lenet5 needs images of at least 4x4, got {h}x{w}")
    ho, wo = h, w
    for _ in range(2):
        ho, wo = (ho + 2 * p - k + 1) // 2, (wo + 2 * p - k + 1) // 2
    if ho < 1 or wo < 1:
        raise ProbPruneError(f"lenet5: input {h}x{w} too small")
    with _seeded(seed):
        return nn.Sequential(
            nn.Conv2d(c, 6, k, padding=p, bias=bias), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(6, 16, k, padding=p, bias=bias), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Flatten(),
            nn.Linear(16 * ho * wo, 120, bias=bias), nn.ReLU(),
            nn.Linear(120, 84, bias=bias), nn.ReLU(),
            nn.Linear(84, n_classes, bias=bias),
        )


def conv2(input_shape=(1, 28, 28), n_classes: int = 10, channels: int = 16, fc: int = 64, bias: bool = True,
          seed: int | None = None):
    """Conv-2 (LTH paper's layout: conv3-conv3-maxpool2-FC-FC-out, padding 1) with reduced widths for CPU
    (paper: 64 channels, FC 256). ``channels`` and ``fc`` set the widths."""
    import torch.nn as nn

    c, h, w = _check_image_shape(input_shape)
    if h < 2 or w < 2:
        raise ProbPruneError(f"conv2 needs images of at least 2x2, got {h}x{w}")
    with _seeded(seed):
        return nn.Sequential(
            nn.Conv2d(c, channels, 3, padding=1, bias=bias), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Flatten(),
            nn.Linear(channels * (h // 2) * (w // 2), fc, bias=bias), nn.ReLU(),
            nn.Linear(fc, fc, bias=bias), nn.ReLU(),
            nn.Linear(fc, n_classes, bias=bias),
        )


def is_conv_model(name: str) -> bool:
    return name.split(":")[0] in ("lenet5", "conv2")


def build_model(name: str, input_shape: Sequence[int], n_classes: int, bias: bool = True, seed: int | None = None):
    """A model by name for a dataset's ``input_shape``: ``lenet_300_100``, ``lenet5``, ``conv2`` or
    ``mlp:W1,W2,...`` (hidden widths; input and output sizes come from the dataset)."""
    import numpy as np

    base, _, arg = str(name).partition(":")
    if base not in MODELS:
        raise ProbPruneError(f"unknown model {name!r}; available: lenet_300_100, lenet5, conv2, mlp:W1,W2,...")
    shape = tuple(int(v) for v in input_shape)
    if base in ("lenet5", "conv2"):
        if len(shape) != 3:
            raise ProbPruneError(f"model {base!r} is a conv net: load the dataset with images=True")
        return (lenet5 if base == "lenet5" else conv2)(shape, n_classes=n_classes, bias=bias, seed=seed)
    if len(shape) != 1:
        raise ProbPruneError(f"model {base!r} is fully connected: it needs flat inputs, got shape {shape}")
    d = int(np.prod(shape))
    if base == "lenet_300_100":
        return lenet_300_100(bias=bias, n_in=d, n_classes=n_classes, seed=seed)
    try:
        hidden = [int(v) for v in arg.split(",") if v.strip()]
    except ValueError:
        raise ProbPruneError(f"mlp widths must be integers, e.g. 'mlp:100,50'; got {name!r}") from None
    return mlp((d, *hidden, n_classes), bias=bias, seed=seed)
