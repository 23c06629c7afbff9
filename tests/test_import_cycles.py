"""The library has no import cycles (issue 22): every import of a probprune module by another, at module level or
inside a function, forms a directed graph over the modules of probprune/, and that graph is acyclic. A package's
``__init__`` counts as a module; ``from pkg import name`` depends on ``pkg.name`` when that is a module, else on
``pkg`` itself. The command line registers its commands through ``probprune.cli.app`` (not the package), and the
experiment catalogue loads the experiment modules, which import only ``experiments.base``."""
from __future__ import annotations

import ast
from pathlib import Path

import probprune

ROOT = Path(probprune.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        rel = p.relative_to(ROOT.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name[: -len(".__init__")] if name.endswith(".__init__") else name] = p
    return out


def _deps(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    out = set()
    is_pkg = path.name == "__init__.py"
    for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                parts = (name if is_pkg else name.rsplit(".", 1)[0]).split(".")
                parts = parts[: len(parts) - (n.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            for a in n.names:
                out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base)
        elif isinstance(n, ast.Import):
            out.update(a.name for a in n.names)
    return {d for d in out if d in mods and d != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_the_library():
    mods = _modules()
    assert len(mods) > 50
    graph = {m: _deps(m, p, mods) for m, p in mods.items()}
    assert _cycles(graph) == []
