"""Loading a user's model from a file: a pickled ``nn.Module`` or a state dict plus an architecture name."""
from __future__ import annotations

import contextlib
import os
import sys
import warnings
from typing import Sequence

from probprune.core.errors import ProbPruneError

INPUT_DIM_TO_DATASET = {784: "mnist5k", 64: "digits", 40: "mnist1d"}


def load_model(path: str, arch: str | None = None, input_shape: Sequence[int] | None = None,
               n_classes: int | None = None):
    """Load ``path``: a whole module saved with ``torch.save(model)`` or a state dict saved with
    ``torch.save(model.state_dict())``; for a state dict give ``arch`` (``lenet_300_100``, ``lenet5``, ``conv2``,
    ``mlp:W1,...``, ``mlp`` with the hidden widths read from the state dict; see
    :func:`probprune.net.zoo.build_model`). The class count is the output size of the state dict's last weight
    unless ``n_classes`` is given. A pickled module is unpickled with the current folder importable (a class defined
    in ``./mymodels.py`` is found). Missing file -> FileNotFoundError; a file torch cannot read, a TorchScript
    archive, or a state dict that does not fit the architecture (every missing / unexpected / mis-shaped key listed)
    -> ProbPruneError."""
    return _load(path, arch, input_shape, n_classes)[0]


def load_model_and_arch(path: str, arch: str | None = None, input_shape: Sequence[int] | None = None,
                        n_classes: int | None = None):
    """:func:`load_model` plus the architecture name, from one read of the file: ``arch`` when given (widths filled
    in for a bare ``mlp``), else the name stored by :func:`save_model` (``probprune train``, ``prune --save-model``);
    None for a pickled module."""
    model, _, arch = _load(path, arch, input_shape, n_classes)
    return model, arch


@contextlib.contextmanager
def _cwd_importable():
    """The current folder on ``sys.path`` (appended, so it never shadows an installed module) while unpickling:
    a module saved from ``mymodels.py`` loads when probprune runs from the folder that holds it."""
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.append(cwd)
    try:
        yield
    finally:
        if added:
            try:
                sys.path.remove(cwd)
            except ValueError:  # pragma: no cover - removed by the unpickled code itself
                pass


def _torch_load(path):
    import torch

    with warnings.catch_warnings():
        # torch.load warns (2 lines) before dispatching a TorchScript archive to torch.jit.load, which warns again
        # (deprecated): the archive is refused below in one line
        warnings.simplefilter("ignore")
        with _cwd_importable():
            try:
                return torch.load(path, map_location="cpu", weights_only=False)
            except ModuleNotFoundError as exc:
                raise ProbPruneError(
                    f"cannot read model file {path}: it pickles a class from module {exc.name!r}, which is not "
                    f"importable here; run probprune from the folder that holds {exc.name}.py or add that folder to "
                    "PYTHONPATH") from None
            except ProbPruneError:
                raise
            except Exception as exc:  # torch raises many types for corrupt files
                first = str(exc).splitlines()[0][:120] if str(exc) else ""
                raise ProbPruneError(f"cannot read model file {path}: {type(exc).__name__}: {first}") from None


def _first_last_weights(sd: dict):
    """(first, last) weight entries (key, tensor) of a state dict, in its order; (None, None) when it has none."""
    ws = [(k, v) for k, v in sd.items() if k.endswith("weight") and v.ndim in (2, 3, 4)]
    if not ws:
        return None, None
    return ws[0], ws[-1]


def infer_arch(arch: str, sd: dict) -> str:
    """``arch`` with the hidden widths of a bare ``mlp`` (or ``mlp:``) read from the state dict: the output sizes of
    its 2-D weights but the last."""
    base, _, arg = str(arch).partition(":")
    if base != "mlp" or arg.strip():
        return arch
    ws = [v for k, v in sd.items() if k.endswith("weight") and v.ndim == 2]
    return "mlp:" + ",".join(str(int(w.shape[0])) for w in ws[:-1])


def _mismatch(model, sd: dict) -> str:
    """Every missing, unexpected and mis-shaped key (nothing cut off)."""
    want = model.state_dict()
    missing = [k for k in want if k not in sd]
    unexpected = [k for k in sd if k not in want]
    shapes = [f"{k} {tuple(sd[k].shape)} vs {tuple(want[k].shape)}" for k in want
              if k in sd and tuple(sd[k].shape) != tuple(want[k].shape)]
    parts = []
    if missing:
        parts.append(f"missing keys {', '.join(missing)}")
    if unexpected:
        parts.append(f"unexpected keys {', '.join(unexpected)}")
    if shapes:
        parts.append(f"shapes (file vs architecture) {'; '.join(shapes)}")
    return "; ".join(parts)


def _load(path, arch, input_shape, n_classes):
    """(module in eval mode, the input shape known from the arguments or the file or None, the architecture name
    given or stored or None)."""
    import torch

    if not os.path.exists(path):
        raise FileNotFoundError(f"model file not found: {path}")
    if os.path.isdir(path):
        raise ProbPruneError(f"model path is a directory, not a file: {path}")
    obj = _torch_load(path)
    if isinstance(obj, torch.jit.ScriptModule):
        raise ProbPruneError(f"{path} is a TorchScript archive: probprune reads modules saved with torch.save(model) "
                             "or state dicts (torch.fx cannot trace TorchScript)")
    if isinstance(obj, torch.nn.Module):
        if arch is not None:  # the module carries its own architecture: an --arch would be silently ignored
            raise ProbPruneError(f"{path} holds a whole module ({type(obj).__name__}), which carries its own "
                                 f"architecture: --arch {arch} applies to state dicts only; drop it")
        return obj.eval(), input_shape, arch
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        arch = arch or obj.get("arch")
        input_shape = input_shape or obj.get("input_shape")
        obj = obj["state_dict"]
    if isinstance(obj, dict) and not obj:
        raise ProbPruneError(f"{path} holds an empty dict: no weights to read")
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        if arch is None:
            raise ProbPruneError(f"{path} holds a state dict: pass --arch (e.g. lenet_300_100, mlp:300,100, lenet5)")
        from probprune.net.zoo import MODELS, build_model, is_conv_model

        if str(arch).split(":")[0] not in MODELS:
            raise ProbPruneError(f"unknown architecture {arch!r}; available: lenet_300_100, lenet5, conv2, "
                                 "mlp:W1,W2,... (mlp alone: widths read from the state dict)")
        first, last = _first_last_weights(obj)
        if first is None:
            raise ProbPruneError(f"state dict in {path} has no Linear or Conv weight (keys: {', '.join(obj)})")
        conv_file = first[1].ndim == 4
        if conv_file != is_conv_model(arch):
            raise ProbPruneError(
                f"state dict in {path} does not match architecture {arch!r}: its first weight {first[0]!r} has shape "
                f"{tuple(first[1].shape)} (a {'Conv2d' if conv_file else 'Linear'} layer), while {arch!r} starts "
                f"with a {'Conv2d' if is_conv_model(arch) else 'Linear'} layer")
        arch = infer_arch(arch, obj)
        if n_classes is None:
            n_classes = int(last[1].shape[0])
        if input_shape is None:
            input_shape = (int(first[1].shape[1]),) if first[1].ndim == 2 else None
            if input_shape is None:
                raise ProbPruneError("a conv architecture needs --input-shape C,H,W")
        has_bias = any(k.endswith("bias") for k in obj)
        model = build_model(arch, input_shape, n_classes, bias=has_bias)
        why = _mismatch(model, obj)
        if why:
            raise ProbPruneError(f"state dict in {path} does not fit architecture {arch!r}: {why}")
        try:
            model.load_state_dict(obj)
        except RuntimeError as exc:  # pragma: no cover - keys and shapes were compared above
            raise ProbPruneError(f"state dict in {path} does not fit architecture {arch!r}: "
                                 f"{' '.join(str(exc).split())}") from None
        return model.eval(), tuple(int(v) for v in input_shape), arch
    raise ProbPruneError(f"{path} holds a {type(obj).__name__}, not a torch module or state dict")


def read_network(path: str, arch: str | None = None, input_shape: Sequence[int] | None = None,
                 n_classes: int | None = None):
    """The one model reader for files: :func:`load_model` then :func:`probprune.net.from_torch` (torch.fx tracing,
    refusals naming the operation, forward verification), then
    :func:`probprune.net.trace.check_finite_forward` (a forward that overflows float64 is refused naming the layer).
    ``input_shape`` defaults to the one stored by
    :func:`save_model` (``probprune train``) when present. Returns (module, graph)."""
    model, input_shape, _ = _load(path, arch, input_shape, n_classes)
    from probprune.net import from_torch
    from probprune.net.trace import check_finite_forward

    graph = from_torch(model, input_shape)
    check_finite_forward(model, graph.input_shape)  # a file whose forward overflows: say where, before any bound
    return model, graph


def read_parsed(path: str, arch: str | None = None, input_shape: Sequence[int] | None = None,
                n_classes: int | None = None):
    """The chain view (:class:`probprune.net.templates.ParsedModel`, carrying its graph) of a model file, for chain-based
    consumers (certified budgets, Monte Carlo); non-chains are refused naming the node."""
    from probprune.net.templates import parsed_from_graph

    return parsed_from_graph(read_network(path, arch, input_shape, n_classes)[1])


def save_model(model, path: str, arch: str | None = None, input_shape=None) -> None:
    """Save a state dict with its architecture name so :func:`load_model` needs no flags."""
    import torch

    torch.save({"state_dict": model.state_dict(), "arch": arch, "input_shape": input_shape}, path)
