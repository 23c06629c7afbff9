"""Issue 13: one versioned JSON schema style for every command (docs/cli.md), non-finite numbers encoded one way
(null + a top-level "nonfinite" map of JSON pointers), checked against a small JSON-Schema subset; and one option
vocabulary (Enum choices equal to the library's own lists)."""
import json
import math
import re

import pytest
import torch
import torch.nn as nn

from _cli import run_cli
from probprune.cli.common import to_json

SCHEMA_RE = r"^probprune\.[a-z][a-z0-9_.-]*/[0-9]+$"

#: the envelope every JSON output follows (a JSON Schema, draft 2020-12 subset checked by ``check`` below)
ENVELOPE = {
    "type": "object",
    "required": ["schema"],
    "properties": {
        "schema": {"type": "string", "pattern": SCHEMA_RE},
        "nonfinite": {"type": "object", "additionalProperties": {"enum": ["nan", "inf", "-inf"]}},
    },
}
ERROR = {"type": "object", "required": ["schema", "error", "command"],
         "properties": {"schema": {"const": "probprune.error/1"}, "error": {"type": "string"},
                        "command": {"type": "string"}}}
#: per-command required keys (the keys scripts already read are kept)
REQUIRED = {
    "probprune.bound/1": ["eps", "delta", "layers", "statement", "provenance", "widths", "K"],
    "probprune.budget/1": ["eps", "delta", "method", "layers", "total_prunable", "total_weights", "widths"],
    "probprune.width/1": ["eps", "delta", "min_width_explicit", "schedule"],
    "probprune.certify/1": ["model", "method", "fraction", "certificate"],
    "probprune.mc.plan/1": ["hash", "run_dir", "chunks", "networks", "rows", "config"],
    "probprune.lottery.widths/1": ["rows", "delta", "C", "log_base"],
    "probprune.lottery.subset-sum.solve/1": ["rows", "seconds", "coefficients"],
    "probprune.experiment.list/1": ["experiments"],
}
TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def check(inst, schema, path="") -> None:
    """Validate ``inst`` against the JSON-Schema keywords used here (type, required, properties,
    additionalProperties, items, pattern, enum, const)."""
    t = schema.get("type")
    if t == "number":
        assert isinstance(inst, (int, float)) and not isinstance(inst, bool), path
    elif t is not None:
        assert isinstance(inst, TYPES[t]), f"{path}: {type(inst).__name__} is not {t}"
    if "const" in schema:
        assert inst == schema["const"], path
    if "enum" in schema:
        assert inst in schema["enum"], f"{path}: {inst!r}"
    if "pattern" in schema:
        assert re.search(schema["pattern"], inst), f"{path}: {inst!r}"
    for k in schema.get("required", []):
        assert k in inst, f"{path}: missing {k!r}"
    for k, sub in schema.get("properties", {}).items():
        if isinstance(inst, dict) and k in inst:
            check(inst[k], sub, f"{path}/{k}")
    if isinstance(inst, dict) and isinstance(schema.get("additionalProperties"), dict):
        for k, v in inst.items():
            if k not in schema.get("properties", {}):
                check(v, schema["additionalProperties"], f"{path}/{k}")
    if isinstance(inst, list) and "items" in schema:
        for i, v in enumerate(inst):
            check(v, schema["items"], f"{path}/{i}")


def _no_nonfinite_strings(x, path=""):
    if isinstance(x, dict):
        for k, v in x.items():
            if k != "nonfinite" or path:
                _no_nonfinite_strings(v, f"{path}/{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            _no_nonfinite_strings(v, f"{path}/{i}")
    else:
        assert not (isinstance(x, str) and x.lower() in ("nan", "inf", "-inf", "infinity")), path


def _pointer(doc, ptr):
    for part in ptr.strip("/").split("/"):
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def _strict_loads(s):
    def bad(c):
        raise AssertionError(f"non-standard JSON constant {c}")

    return json.loads(s, parse_constant=bad)


def _run(argv, capsys):
    return run_cli(capsys, argv)


@pytest.fixture(scope="module")
def model64(tmp_path_factory):
    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("m") / "m64.pt"
    torch.save(nn.Sequential(nn.Linear(64, 16, bias=False), nn.ReLU(), nn.Linear(16, 10, bias=False)), p)
    return str(p)


COMMANDS = [
    (["bound", "--fraction", "0.05", "--widths", "20,30,5"], "probprune.bound/1"),
    (["budget", "--eps", "0.5", "--widths", "20,30,5", "--no-trained-demo"], "probprune.budget/1"),
    (["width", "--eps", "3", "--fraction", "0.05", "--d0", "20", "--dl", "5"], "probprune.width/1"),
    (["certify", "--model", "{m64}", "--fraction", "0.2"], "probprune.certify/1"),
    (["mc", "plan", "mc_linear"], "probprune.mc.plan/1"),
    (["lottery", "widths", "--d", "10", "--eps", "0.01"], "probprune.lottery.widths/1"),
    (["lottery", "subset-sum", "solve", "--n", "8"], "probprune.lottery.subset-sum.solve/1"),
    (["experiment", "list"], "probprune.experiment.list/1"),
]


@pytest.mark.parametrize("argv,schema", COMMANDS, ids=[c[1] for c in COMMANDS])
def test_every_command_json_follows_the_envelope(argv, schema, model64, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run([a.replace("{m64}", model64) for a in argv] + ["--json"], capsys)
    assert code == 0, err
    d = _strict_loads(out)
    check(d, ENVELOPE)
    assert d["schema"] == schema
    check(d, {"required": REQUIRED[schema]})
    _no_nonfinite_strings(d)
    for ptr, kind in d.get("nonfinite", {}).items():
        assert _pointer(d, ptr) is None and kind in ("nan", "inf", "-inf")
    # --no-json is the default: the same command prints no JSON
    code, out, _ = _run([a.replace("{m64}", model64) for a in argv] + ["--no-json"], capsys)
    assert code == 0 and not out.lstrip().startswith("{")


def test_nonfinite_encoding_is_null_plus_pointer_map():
    s = to_json({"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": -math.inf}, "e": 2.5}, "probprune.x/1")
    d = _strict_loads(s)
    check(d, ENVELOPE)
    assert d["a"] is None and d["b"] == [1.0, None] and d["c"]["d"] is None and d["e"] == 2.5
    assert d["nonfinite"] == {"/a": "nan", "/b/1": "inf", "/c/d": "-inf"}
    assert "nonfinite" not in _strict_loads(to_json({"a": 1.0}, "probprune.x/1"))


def test_error_object(capsys):
    code, out, err = _run(["bound", "--fraction", "2", "--json"], capsys)
    assert code == 2
    check(_strict_loads(out), ERROR)


def test_enum_choices_match_the_library():
    """The CLI's Enum choices are the library's own lists (kept literal in cli/common.py so --help stays fast)."""
    from probprune.budgets import apriori as B
    from probprune.theory import apriori as bounds
    from probprune.net import data
    from probprune.core import registry
    from probprune.cli import common as C
    from probprune.pruning import api, densities, imp, sampling
    from probprune.subsetsum import lueker, solver
    from probprune.net.train import OPTIMIZERS

    vals = lambda E: {e.value for e in E}  # noqa: E731
    assert vals(C.BudgetMethod) == set(bounds.METHODS)
    assert vals(C.Law) == set(bounds.LAWS) and set(bounds.LAWS) <= set(registry.choices("law"))
    assert vals(C.BudgetMode) == set(B.MODES)
    assert vals(C.Dataset) == set(data.DATASETS)
    assert vals(C.PruneMethod) == set(api.FAMILIES)
    assert vals(C.Scheme) == set(densities.SCHEMES)
    assert vals(C.Rounding) == set(sampling.ROUNDING)
    assert vals(C.Strategy) == set(imp.STRATEGIES) and vals(C.Retrain) == set(imp.RETRAIN)
    assert set(C.CONTROLS) == set(imp.CONTROLS) and vals(C.Optimizer) == set(OPTIMIZERS)
    assert vals(C.SumLaw) == set(lueker.LAWS) and vals(C.SumMode) == set(solver.MODES)
    from probprune.net.templates import ACTIVATIONS

    assert vals(C.Activation) == set(ACTIVATIONS)


def test_help_lists_choices_and_json_flag(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("TERMINAL_WIDTH", "250")
    for argv, words in ((["bound", "--help"], ["random_exact", "gaussian", "--no-json"]),
                        (["prune", "--help"], ["snip_ratio", "bernoulli", "--arch", "--fraction"]),
                        (["lth", "--help"], ["lr_rewind", "--fraction"]),
                        (["lottery", "construct", "--help"], ["per-weight", "assigned"])):
        code, out, _ = _run(argv, capsys)
        assert code == 0 and all(w in out for w in words), (argv, [w for w in words if w not in out])
        assert "<bool>" not in out
