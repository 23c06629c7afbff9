"""Sweep configuration for Monte Carlo runs: a frozen dataclass, loadable from YAML/TOML and CLI overrides.

Every field is validated before any work starts (unknown key, non-positive trial count, empty sweep, fractions out
of range, unknown methods/laws/activations/datasets all raise :class:`~probprune.core.errors.ProbPruneError` with one
line). The md5 of the canonical JSON of the config names the run folder ``results/mc/<hash>/`` (open_lth-style
hashed run directories, ANCHORS.md). Execution settings (workers, scheduler, output root) are *not* part of the
config: they do not change the rows.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from probprune.core import registry as _registry
from probprune.core.errors import ProbPruneError

#: methods of :func:`probprune.pruning.prune` usable in trials (data-free ones), with their keyword arguments
LIB_METHODS = {
    "lib_magnitude_layer": {"method": "magnitude", "scope": "layer"},
    "lib_magnitude_global": {"method": "magnitude", "scope": "global"},
    "lib_random_uniform": {"method": "random", "scheme": "uniform", "sampling": "exact"},
    "lib_random_er": {"method": "random", "scheme": "er", "sampling": "exact"},
    "lib_random_erk": {"method": "random", "scheme": "erk", "sampling": "exact"},
    "lib_structured_l1": {"method": "structured", "norm": "l1"},
}
#: the registry's data-free (magnitude/random family) methods (each with its sampling model,
#: probprune.core.registry), then the lib_* ones
MC_METHODS = (*(m.name for m in _registry.METHODS.values() if m.family_model.batched_score is not None),
              *LIB_METHODS)
#: methods with an a-priori bound in ``probprune.theory.apriori.apriori_bound`` (THEORY §3.4)
BOUND_METHODS = tuple(m.name for m in _registry.METHODS.values() if m.apriori == "thm-RM-RR")
LAWS = _registry.choices("law")
ACTIVATIONS = _registry.choices("activation")
DATASETS = ("mnist5k", "digits", "mnist1d")


@dataclass(frozen=True)
class MCConfig:
    """A Monte Carlo sweep (THEORY §6). The sweep is the product

        networks x activations x laws x seeds  (each: ``n_trials`` independent target networks)
          x methods x fractions                 (each network is pruned with every method at every fraction)
          x deltas                              (each pruned network is checked against every bound)

    Networks: the grid ``widths`` x ``depths`` of FCNs d_0-w-...-w-d_l with ``depth`` weight layers
    (d_0 = ``input_dim``, d_l = ``output_dim``; ``None`` means = w, or the dataset's dimension for d_0), plus
    explicit FCN width lists ``archs`` and CNNs ``cnns`` (dicts: input_shape, convs=[{c_out, kernel, stride,
    padding, pool: [kind, k, s]}], fc=[...]), plus **fixed (e.g. trained) networks** ``models``: paths of whole
    ``torch.save``d ``nn.Module`` chains (or mappings {path, input_shape} for conv nets). For a fixed network only
    the masks are random: random methods are checked against Cert-R (THEORY §3.11, probability over the mask);
    magnitude pruning of a fixed net is deterministic and gets the Cert-D bracket only. Weights: the paper's law a_i = K/sqrt(m_i) (uniform) or the Gaussian
    analogue with s_i = a_i (§1.3, §3.12). A trial's target weights depend only on (seed, network, law, trial
    index), so all methods, fractions and activations see the same target networks (common random numbers);
    random masks are nested across fractions (prune where u < p for one uniform draw u per weight).

    Measurement: exact error for identity-activation FCNs; otherwise PGD lower bound (``pgd_*``) and the Cert-D upper
    bound (``certificate``). ``dataset`` (mnist5k | digits | mnist1d) adds the average error over the first
    ``dataset_n`` test inputs scaled into the unit ball. ``batch_size`` networks are evaluated together and form one
    resumable chunk. ``torch_threads`` is set inside every chunk.
    """

    name: str = "mc"
    widths: tuple[int, ...] = ()
    depths: tuple[int, ...] = ()
    input_dim: int | None = None
    output_dim: int | None = None
    archs: tuple[tuple[int, ...], ...] = ()
    cnns: tuple[Any, ...] = ()
    models: tuple[Any, ...] = ()
    activations: tuple[str, ...] = ("identity",)
    laws: tuple[str, ...] = ("uniform",)
    K: float = 1.0
    methods: tuple[str, ...] = ("magnitude", "random")
    fractions: tuple[float, ...] = (0.05, 0.1, 0.2)
    deltas: tuple[float, ...] = (0.05, 0.1)
    alpha: float = 0.05
    seeds: tuple[int, ...] = (0,)
    n_trials: int = 100
    batch_size: int = 50
    pgd_starts: int = 64
    pgd_iters: int = 60
    pgd_step: float = 0.5
    pgd_basis: bool = True
    certificate: bool = True
    dataset: str | None = None
    dataset_n: int = 256
    torch_threads: int = 1

    def __post_init__(self):
        validate(self)

    # ------------------------------------------------------------------ identity
    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def canonical_json(self) -> str:
        """Sorted-key JSON of all fields; fields added later (``models``) enter only when set, so that run folders
        of older configs keep their names."""
        d = self.to_dict()
        for k in _HASH_OMIT_IF_EMPTY:
            if not d.get(k):
                d.pop(k, None)
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        """md5 of the canonical JSON (sorted keys, no whitespace); names the run folder."""
        return hashlib.md5(self.canonical_json().encode()).hexdigest()

    def replace(self, **changes) -> "MCConfig":
        return from_dict({**self.to_dict(), **changes})


_HASH_OMIT_IF_EMPTY = ("models",)


def _tuple(v, name, conv):
    if v is None:
        return ()
    if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
        v = [v]
    out = []
    for x in v:
        try:
            out.append(conv(x))
        except (TypeError, ValueError):
            raise ProbPruneError(f"{name}: cannot read {x!r}") from None
    return tuple(out)


def _int(x):
    if isinstance(x, bool) or (isinstance(x, float) and not x.is_integer()):
        raise ValueError
    return int(x)


#: names a sweep accepts beyond the registry's, per registry kind (the lib_* methods of probprune.pruning.prune)
_EXTRA_NAMES = {"method": LIB_METHODS}


def _canonical(kind: str, name) -> str:
    """One spelling per strategy (probprune.core.registry): aliases become the canonical name before hashing; names the
    registry does not know (lib_* methods, typos) are only case/dash-folded and checked below."""
    folded = str(name).lower().replace("-", "_")
    if folded in _EXTRA_NAMES.get(kind, ()):
        return folded
    try:
        return _registry.canonical(kind, folded)
    except ProbPruneError:
        return folded


def draws_mask_scores(methods) -> bool:
    """Whether a sweep draws the uniform mask scores (stream 1): some method is a registry method whose mask is
    independent of W (R-Bern, R-Bern-rescaled, R-exact)."""
    return any(_registry.METHODS[m].random_mask for m in methods if m in _registry.METHODS)


def validate(c: MCConfig) -> None:
    """Raise ProbPruneError (one line) for anything that would fail later; called on construction."""
    object.__setattr__(c, "widths", _tuple(c.widths, "widths", _int))
    object.__setattr__(c, "depths", _tuple(c.depths, "depths", _int))
    object.__setattr__(c, "archs", tuple(_tuple(a, "archs", _int) for a in (c.archs or ())))
    object.__setattr__(c, "cnns", tuple(c.cnns or ()))
    models = []
    for m in (c.models or ()):
        if isinstance(m, (str, Path)):
            m = {"path": str(m)}
        if not isinstance(m, Mapping) or "path" not in m:
            raise ProbPruneError("each entry of models is a path or a mapping with path (and input_shape for conv nets)")
        extra = set(m) - {"path", "input_shape", "md5"}
        if extra:
            raise ProbPruneError(f"unknown key {sorted(extra)[0]!r} in a models entry; allowed: path, input_shape, md5")
        if not Path(m["path"]).is_file():
            raise FileNotFoundError(f"model file not found: {m['path']}")
        digest = hashlib.md5(Path(m["path"]).read_bytes()).hexdigest()
        if m.get("md5") not in (None, digest):
            raise ProbPruneError(f"model file {m['path']} changed (md5 {digest}, config says {m['md5']})")
        entry = {"path": str(m["path"]), "md5": digest}  # the file's content enters the config hash
        if m.get("input_shape") is not None:
            entry["input_shape"] = [int(x) for x in m["input_shape"]]
        models.append(entry)
    object.__setattr__(c, "models", tuple(models))
    for nm, kind in (("activations", "activation"), ("laws", "law"), ("methods", "method")):
        object.__setattr__(c, nm, _tuple(getattr(c, nm), nm, lambda s, kind=kind: _canonical(kind, s)))
    object.__setattr__(c, "fractions", _tuple(c.fractions, "fractions", float))
    object.__setattr__(c, "deltas", _tuple(c.deltas, "deltas", float))
    object.__setattr__(c, "seeds", _tuple(c.seeds, "seeds", _int))

    for nm in ("n_trials", "batch_size", "pgd_iters", "dataset_n", "torch_threads"):
        v = getattr(c, nm)
        try:
            v = _int(v)
        except (TypeError, ValueError):
            raise ProbPruneError(f"{nm} must be an integer, got {v!r}") from None
        if v < 1:
            raise ProbPruneError(f"{nm} must be >= 1, got {v}")
        object.__setattr__(c, nm, v)
    try:
        object.__setattr__(c, "pgd_starts", _int(c.pgd_starts))
    except (TypeError, ValueError):
        raise ProbPruneError(f"pgd_starts must be an integer, got {c.pgd_starts!r}") from None
    if c.pgd_starts < 64:
        raise ProbPruneError(f"pgd_starts must be >= 64 (THEORY §6), got {c.pgd_starts}")
    for nm in ("K", "pgd_step", "alpha"):
        try:
            v = float(getattr(c, nm))
        except (TypeError, ValueError):
            raise ProbPruneError(f"{nm} must be a number, got {getattr(c, nm)!r}") from None
        if not math.isfinite(v) or v <= 0:
            raise ProbPruneError(f"{nm} must be a positive number, got {v}")
        object.__setattr__(c, nm, v)
    if c.alpha >= 1:
        raise ProbPruneError(f"alpha must be in (0, 1), got {c.alpha}")
    for nm in ("input_dim", "output_dim"):
        v = getattr(c, nm)
        if v is not None:
            try:
                v = _int(v)
            except (TypeError, ValueError):
                raise ProbPruneError(f"{nm} must be an integer or null, got {v!r}") from None
            if v < 1:
                raise ProbPruneError(f"{nm} must be >= 1, got {v}")
            object.__setattr__(c, nm, v)
    object.__setattr__(c, "pgd_basis", bool(c.pgd_basis))
    object.__setattr__(c, "certificate", bool(c.certificate))
    object.__setattr__(c, "name", str(c.name))

    if any(w < 1 for w in c.widths):
        raise ProbPruneError(f"widths must be >= 1, got {c.widths}")
    if any(d < 1 for d in c.depths):
        raise ProbPruneError(f"depths (number of weight layers) must be >= 1, got {c.depths}")
    for a in c.archs:
        if len(a) < 2 or any(w < 1 for w in a):
            raise ProbPruneError(f"each entry of archs is a width list d_0,...,d_l with >= 2 positive entries, got {a}")
    bad = [a for a in c.activations if a not in ACTIVATIONS]
    if bad:
        raise ProbPruneError(f"unknown activation {bad[0]!r}; supported: {', '.join(ACTIVATIONS)}")
    bad = [a for a in c.laws if a not in LAWS]
    if bad:
        raise ProbPruneError(f"unknown law {bad[0]!r}; supported: {', '.join(LAWS)}")
    bad = [a for a in c.methods if a not in MC_METHODS]
    if bad:
        raise ProbPruneError(f"unknown method {bad[0]!r}; supported: {', '.join(MC_METHODS)}")
    for q in c.fractions:
        if not (0.0 <= q <= 1.0):
            raise ProbPruneError(f"fractions must be in [0, 1], got {q}")
    if any(m in LIB_METHODS for m in c.methods) and any(q >= 1.0 for q in c.fractions):
        raise ProbPruneError("probprune.pruning methods (lib_*) need fractions < 1")
    if "random_rescaled" in c.methods and any(q >= 1.0 for q in c.fractions):
        raise ProbPruneError("random_rescaled needs fractions < 1 (kept weights are divided by 1 - p)")
    for d in c.deltas:
        if not (0.0 < d < 1.0):
            raise ProbPruneError(f"deltas must be in (0, 1), got {d}")
    if any(s < 0 for s in c.seeds):
        raise ProbPruneError(f"seeds must be >= 0, got {c.seeds}")
    if c.dataset is not None:
        ds = str(c.dataset).lower()
        if ds not in DATASETS:
            raise ProbPruneError(f"unknown dataset {c.dataset!r}; available: {', '.join(DATASETS)}")
        object.__setattr__(c, "dataset", ds)
    for cn in c.cnns:
        if not isinstance(cn, Mapping) or "input_shape" not in cn or "fc" not in cn:
            raise ProbPruneError("each entry of cnns is a mapping with input_shape, convs and fc")
        extra = set(cn) - {"input_shape", "convs", "fc"}
        if extra:
            raise ProbPruneError(f"unknown key {sorted(extra)[0]!r} in a cnns entry; allowed: input_shape, convs, fc")

    # empty sweep dimensions
    n_grid = len(c.widths) * len(c.depths)
    if n_grid + len(c.archs) + len(c.cnns) + len(c.models) == 0:
        raise ProbPruneError("empty sweep: no networks (widths x depths, archs, cnns and models are all empty)")
    for nm in ("activations", "laws", "methods", "fractions", "deltas", "seeds"):
        if len(getattr(c, nm)) == 0:
            raise ProbPruneError(f"empty sweep: {nm} is empty")
    for nm in ("widths", "depths"):
        if len(getattr(c, nm)) == 0 and len(getattr(c, "depths" if nm == "widths" else "widths")) > 0:
            raise ProbPruneError(f"empty sweep: {nm} is empty while the other grid axis is not")


FIELDS = tuple(f.name for f in dataclasses.fields(MCConfig))


def from_dict(d: Mapping[str, Any]) -> MCConfig:
    """Build a config from a mapping; an unknown key is an error (listing the valid keys)."""
    if not isinstance(d, Mapping):
        raise ProbPruneError(f"a config must be a mapping of keys to values, got {type(d).__name__}")
    unknown = [k for k in d if k not in FIELDS]
    if unknown:
        raise ProbPruneError(f"unknown config key {unknown[0]!r}; valid keys: {', '.join(FIELDS)}")
    return MCConfig(**dict(d))


def parse_override(s: str) -> tuple[str, Any]:
    """``key=value`` with the value read as YAML (``widths=[32,64]``, ``dataset=null``, ``n_trials=500``)."""
    import yaml

    if "=" not in s:
        raise ProbPruneError(f"override must look like key=value, got {s!r}")
    k, v = s.split("=", 1)
    try:
        return k.strip(), yaml.safe_load(v)
    except yaml.YAMLError:
        raise ProbPruneError(f"cannot parse the value of override {s!r}") from None


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> MCConfig:
    """Read a YAML (``.yaml``/``.yml``) or TOML (``.toml``) file, apply ``overrides`` and validate."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"config file not found: {p}")
        text = p.read_text()
        if p.suffix.lower() == ".toml":
            import tomllib

            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError as e:
                raise ProbPruneError(f"{p}: invalid TOML: {str(e).splitlines()[0]}") from None
        else:
            import yaml

            try:
                data = yaml.safe_load(text) or {}
            except yaml.YAMLError as e:
                raise ProbPruneError(f"{p}: invalid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ProbPruneError(f"{p}: the top level must be a mapping of config keys")
    data.update(dict(overrides or {}))
    return from_dict(data)
