"""Loading a user's model from a file: a pickled ``nn.Module`` or a state dict plus an architecture name."""
from __future__ import annotations

import os
from typing import Sequence

from probprune.core.errors import ProbPruneError

INPUT_DIM_TO_DATASET = {784: "mnist5k", 64: "digits", 40: "mnist1d"}


def load_model(path: str, arch: str | None = None, input_shape: Sequence[int] | None = None, n_classes: int = 10):
    """Load ``path``: a whole module saved with ``torch.save(model)`` or a state dict saved with
    ``torch.save(model.state_dict())``; for a state dict give ``arch`` (``lenet_300_100``, ``lenet5``, ``conv2``,
    ``mlp:W1,...``, see :func:`probprune.net.zoo.build_model`). Missing file -> FileNotFoundError; a file torch cannot
    read, or a state dict that does not fit the architecture -> ProbPruneError."""
    return _load(path, arch, input_shape, n_classes)[0]


def load_model_and_arch(path: str, arch: str | None = None, input_shape: Sequence[int] | None = None,
                        n_classes: int = 10):
    """:func:`load_model` plus the architecture name, from one read of the file: ``arch`` when given, else the name
    stored by :func:`save_model` (``probprune train``, ``prune --save-model``); None for a pickled module."""
    model, _, arch = _load(path, arch, input_shape, n_classes)
    return model, arch


def _load(path, arch, input_shape, n_classes):
    """(module in eval mode, the input shape known from the arguments or the file or None, the architecture name
    given or stored or None)."""
    import torch

    if not os.path.exists(path):
        raise FileNotFoundError(f"model file not found: {path}")
    if os.path.isdir(path):
        raise ProbPruneError(f"model path is a directory, not a file: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for corrupt files
        raise ProbPruneError(f"cannot read model file {path}: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}") from None
    if isinstance(obj, torch.nn.Module):
        return obj.eval(), input_shape, arch
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        arch = arch or obj.get("arch")
        input_shape = input_shape or obj.get("input_shape")
        obj = obj["state_dict"]
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        if arch is None:
            raise ProbPruneError(f"{path} holds a state dict: pass --arch (e.g. lenet_300_100, mlp:300,100, lenet5)")
        from probprune.net.zoo import build_model

        if input_shape is None:
            first = next(iter(v for k, v in obj.items() if k.endswith("weight")))
            input_shape = (first.shape[1],) if first.ndim == 2 else None
            if input_shape is None:
                raise ProbPruneError("a conv architecture needs --input-shape C,H,W")
        has_bias = any(k.endswith("bias") for k in obj)
        model = build_model(arch, input_shape, n_classes, bias=has_bias)
        try:
            model.load_state_dict(obj)
        except RuntimeError as exc:
            raise ProbPruneError(f"state dict in {path} does not fit architecture {arch!r}: {str(exc).splitlines()[0][:160]}") from None
        return model.eval(), tuple(int(v) for v in input_shape), arch
    raise ProbPruneError(f"{path} holds a {type(obj).__name__}, not a torch module or state dict")


def read_network(path: str, arch: str | None = None, input_shape: Sequence[int] | None = None, n_classes: int = 10):
    """The one model reader for files: :func:`load_model` then :func:`probprune.net.from_torch` (torch.fx tracing,
    refusals naming the operation, forward verification). ``input_shape`` defaults to the one stored by
    :func:`save_model` (``probprune train``) when present. Returns (module, graph)."""
    model, input_shape, _ = _load(path, arch, input_shape, n_classes)
    from probprune.net import from_torch

    return model, from_torch(model, input_shape)


def read_parsed(path: str, arch: str | None = None, input_shape: Sequence[int] | None = None, n_classes: int = 10):
    """The chain view (:class:`probprune.net.templates.ParsedModel`, carrying its graph) of a model file, for chain-based
    consumers (certified budgets, Monte Carlo); non-chains are refused naming the node."""
    from probprune.net.templates import parsed_from_graph

    return parsed_from_graph(read_network(path, arch, input_shape, n_classes)[1])


def save_model(model, path: str, arch: str | None = None, input_shape=None) -> None:
    """Save a state dict with its architecture name so :func:`load_model` needs no flags."""
    import torch

    torch.save({"state_dict": model.state_dict(), "arch": arch, "input_shape": input_shape}, path)
