"""One implementation of each formula (issue 10, item 3): every old call site gives the numbers it gave before the
unification (fixed seeds; literals recorded from the pre-unification code), and each single implementation is checked
against an independent ground truth (exact sup error of linear maps, a brute-force tie-broken sort, scipy's binomtest
intervals). Plus the layout rules: importing probprune leaves the process alone; no library module imports the CLI."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import stats

from probprune.measure import attack
from probprune.core.errors import ProbPruneError
from probprune.mc import measure as M
from probprune.net.templates import ACTIVATIONS, ConvLayer, activation, cnn_spec, fcn_spec, sample_weights, to_torch

PKG = Path(__file__).resolve().parents[1] / "probprune"


def _stacked(spec, seeds):
    Ws = [sample_weights(spec, s) for s in seeds]
    return [torch.from_numpy(np.stack([np.asarray(W[i], float) for W in Ws])) for i in range(spec.depth)]


def _prune_rel(W, q):
    return [torch.where(w.abs() < q * w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True), torch.zeros_like(w), w)
            for w in W]


# ------------------------------------------------------------------------------------------------ activations
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_one_activation_table_numpy_torch_module_agree(name):
    a = activation(name, 0.2)
    x = np.linspace(-3, 3, 13)
    ref = {"identity": x, "relu": np.maximum(x, 0), "leaky_relu": np.where(x >= 0, x, 0.2 * x), "tanh": np.tanh(x),
           "hardtanh": np.clip(x, -1, 1), "sigmoid": 1 / (1 + np.exp(-x))}[name]
    xt = torch.tensor(x)
    np.testing.assert_allclose(a.numpy(x), ref, rtol=1e-15, atol=0)
    np.testing.assert_allclose(a.torch(xt).numpy(), ref, rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(a.module()(xt).numpy(), ref, rtol=1e-15, atol=1e-300)


ACT_NAMES = {"relu", "tanh", "sigmoid", "hardtanh", "leaky_relu"}
ACT_IMPLS = {"relu", "tanh", "sigmoid", "hardtanh", "leaky_relu", "ReLU", "Tanh", "Sigmoid", "Hardtanh", "LeakyReLU",
             "clip", "maximum", "clamp", "exp", "where"}


def _activation_dispatches(tree: ast.AST) -> list[tuple[str, int]]:
    """Places that evaluate an activation *by name*: a dict keyed by >= 2 activation names whose values are not plain
    names (name -> implementation), or a function with `if name == "<activation>"` branches that call an
    activation implementation (torch/np/nn) for >= 2 names. Reading a traced graph (implementation -> name) is not
    a dispatch."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant) and k.value in ACT_NAMES}
            if len(keys) >= 2 and not all(isinstance(v, ast.Constant) for v in node.values):
                out.append(("dict", node.lineno))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            hits = set()
            for n in ast.walk(node):
                if isinstance(n, (ast.If, ast.IfExp)):
                    names = {c.value for c in ast.walk(n.test) if isinstance(c, ast.Constant) and c.value in ACT_NAMES}
                    body = n.body if isinstance(n.body, list) else [n.body]
                    if names and any(isinstance(a, ast.Attribute) and a.attr in ACT_IMPLS for b in body for a in ast.walk(b)):
                        hits |= names
            if len(hits) >= 2:
                out.append((getattr(node, "name", "lambda"), node.lineno))
    return out


def test_one_activation_dispatch_in_the_whole_package():
    """AST over every module: activations are evaluated by name only through net/activations.py's table (the old
    copies in mc/measure.py and models.py are gone and no new one may appear under any name)."""
    found = {str(f.relative_to(PKG)): d for f in sorted(PKG.rglob("*.py"))
             if (d := _activation_dispatches(ast.parse(f.read_text())))}
    assert set(found) == {"net/activations.py"}, found
    # the detector itself catches a re-introduced private copy (the plausible bug) in either form
    copy_if = ("def _act(x, name):\n    if name == 'relu':\n        return torch.relu(x)\n"
               "    elif name == 'tanh':\n        return torch.tanh(x)\n    return x\n")
    copy_dict = "ACT = {'relu': nn.ReLU, 'sigmoid': nn.Sigmoid}\n"
    assert _activation_dispatches(ast.parse(copy_if)) and _activation_dispatches(ast.parse(copy_dict))
    import probprune.net.zoo as models

    for name, cls in (("relu", nn.ReLU), ("tanh", nn.Tanh), ("sigmoid", nn.Sigmoid), ("hardtanh", nn.Hardtanh)):
        assert isinstance(models.mlp((3, 4, 2), activation=name, seed=0)[1], cls)  # old models._act choices
    with pytest.raises(ProbPruneError, match="unknown activation"):
        models.mlp((3, 4, 2), activation="gelu")


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_batched_forward_matches_torch_module(name):
    spec = fcn_spec((5, 7, 3), name, 1.0)
    W = _stacked(spec, [3])
    x = torch.randn(9, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    net = to_torch(spec, [w[0].numpy() for w in W]).double()
    torch.testing.assert_close(M.batched_forward(spec, W, x)[0], net(x), rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------------------------------------ PGD
def test_mc_pgd_same_numbers_as_before():
    for act, expect in (("relu", [0.061138754569963094, 0.060164559883798034, 0.057120079970073734]),
                        ("tanh", [0.15518856856606905, 0.11276038509879881, 0.14313882258922853])):
        spec = fcn_spec((6, 8, 5, 3), act, 1.0)
        W = _stacked(spec, [1, 2, 3])
        Wh = _prune_rel(W, 0.4)
        gens = [torch.Generator().manual_seed(10 + k) for k in range(3)]
        biases = [torch.linspace(-0.3, 0.3, L.d_out, dtype=torch.float64) for L in spec.layers] if act == "tanh" else None
        got = M.pgd_lower_bound(spec, W, Wh, n_random=64, iters=30, generators=gens, biases=biases)
        np.testing.assert_allclose(got.numpy(), expect, rtol=1e-10)
    spec = cnn_spec((1, 6, 6), [ConvLayer(3, 3, pool=("max", 2, 2))], [4], "relu", 1.0)
    W = _stacked(spec, [4, 5])
    got = M.pgd_lower_bound(spec, W, _prune_rel(W, 0.3), n_random=64, iters=20,
                            generators=[torch.Generator().manual_seed(7), torch.Generator().manual_seed(8)])
    np.testing.assert_allclose(got.numpy(), [0.11988218008457467, 0.11187269286396574], rtol=1e-10)


def test_callable_pgd_equals_mc_pgd_as_trained_experiment_calls_it():
    """experiments/trained.py now calls attack.pgd_sup_error; it must reproduce its former M.pgd_lower_bound call."""
    for act, expect in (("relu", 0.061138754569963094), ("tanh", 0.10584435561828083)):
        spec = fcn_spec((6, 8, 5, 3), act, 1.0)
        W = [w[:1] for w in _stacked(spec, [1])]
        Wh = _prune_rel(W, 0.4)
        v = M.top_right_singular_vectors(spec, W, Wh)[0]
        res = attack.pgd_sup_error(lambda x: M.batched_forward(spec, W, x)[0], lambda x: M.batched_forward(spec, Wh, x)[0],
                                   spec.input_shape, restarts=32, steps=30, seed=0,
                                   homogeneous=spec.positively_homogeneous, extra_starts=torch.stack([v, -v]))
        assert res.value == pytest.approx(expect, rel=1e-10)
        assert np.linalg.norm(res.x) <= 1 + 1e-12
        with torch.no_grad():  # the witness attains the value
            xw = torch.as_tensor(res.x)[None]
            val = float((M.batched_forward(spec, W, xw)[0] - M.batched_forward(spec, Wh, xw)[0]).norm())
        assert val == pytest.approx(res.value, rel=1e-9)


@pytest.mark.parametrize("homogeneous", [True, False])
def test_pgd_is_a_lower_bound_and_tight_on_linear_maps(homogeneous):
    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(4, 7, generator=g, dtype=torch.float64), torch.randn(4, 7, generator=g, dtype=torch.float64)
    exact = float(torch.linalg.matrix_norm(A - B, ord=2))
    res = attack.pgd_sup_error(lambda x: x @ A.T, lambda x: x @ B.T, (7,), restarts=16, steps=100, seed=3,
                               homogeneous=homogeneous)
    assert res.value <= exact * (1 + 1e-9)
    assert res.value >= 0.999 * exact


def test_subset_sum_measurement_uses_the_one_pgd():
    from probprune.subsetsum.construction import sup_error_lower_bound

    torch.manual_seed(0)
    f, g = nn.Linear(5, 3, bias=False).double(), nn.Linear(5, 3, bias=False).double()
    exact = float(torch.linalg.matrix_norm((f.weight - g.weight).detach(), ord=2))
    lb = sup_error_lower_bound(f, g, (5,), n_starts=16, iters=40)
    assert 0.999 * exact <= lb <= exact * (1 + 1e-9)


#: modules allowed to run a gradient loop on an input: the one PGD, and the display-only power iteration of one layer
#: (a lower estimate printed beside a certificate, never used in one)
GRADIENT_LOOPS_ALLOWED = {"measure/attack.py", "theory/norms.py"}


def _gradient_loops(tree: ast.AST) -> list[int]:
    """Lines of for/while loops that take a gradient outside an optimizer: a call to ``autograd.grad`` (or ``grad``
    imported from it), or ``.backward()`` in a loop without an ``optimizer.step()`` (training loops have one)."""
    out = []
    for loop in ast.walk(tree):
        if not isinstance(loop, (ast.For, ast.While, ast.AsyncFor)):
            continue
        calls = [n.func for n in ast.walk(loop) if isinstance(n, ast.Call)]
        attrs = {f.attr for f in calls if isinstance(f, ast.Attribute)}
        grad = any((isinstance(f, ast.Attribute) and f.attr == "grad") or (isinstance(f, ast.Name) and f.id == "grad")
                   for f in calls)
        if grad or ("backward" in attrs and "step" not in attrs):
            out.append(loop.lineno)
    return out


def test_no_other_pgd_loop_in_the_package():
    """AST over every module (not a grep of three files): the only gradient-ascent loops are the one PGD
    (measure/attack.py) and the display power iteration; a second PGD anywhere (e.g. back in mc/measure.py) fails."""
    found = {str(f.relative_to(PKG)): ls for f in sorted(PKG.rglob("*.py")) if (ls := _gradient_loops(ast.parse(f.read_text())))}
    assert set(found) == GRADIENT_LOOPS_ALLOWED, found
    pgd = ("for t in range(steps):\n    (g,) = torch.autograd.grad(f(x).sum(), x)\n"
           "    x = (x + eta * g).detach().requires_grad_(True)\n")
    manual = "while k < n:\n    loss(x).backward()\n    x = x + x.grad\n"
    train = "for b in batches:\n    opt.zero_grad()\n    loss(b).backward()\n    opt.step()\n"
    assert _gradient_loops(ast.parse(pgd)) and _gradient_loops(ast.parse(manual)) and not _gradient_loops(ast.parse(train))


# ------------------------------------------------------------------------------------------------ exact-k
def _reference_prune(scores: np.ndarray, k: int, forced=None) -> np.ndarray:
    """Brute force: forced entries first, then ascending score, ties by flat index."""
    n = scores.size
    key = sorted(range(n), key=lambda i: (0 if forced is not None and forced[i] else 1, scores[i], i))
    out = np.zeros(n, bool)
    out[key[:k]] = True
    return out


def test_exact_k_rule_against_brute_force_with_ties():
    from probprune.pruning.sampling import exact_k_prune_mask

    rng = np.random.default_rng(0)
    for trial in range(20):
        n = int(rng.integers(1, 40))
        s = rng.integers(0, 4, n).astype(float)  # many ties
        forced = rng.random(n) < 0.2
        for k in sorted({0, int(forced.sum()), n // 2, n} | {int(rng.integers(int(forced.sum()), n + 1))}):
            if k < int(forced.sum()):
                continue
            ref = _reference_prune(s, k, forced)
            np.testing.assert_array_equal(exact_k_prune_mask(s, k, forced), ref)
            np.testing.assert_array_equal(exact_k_prune_mask(torch.tensor(s), k, torch.tensor(forced)).numpy(), ref)
    batch = rng.integers(0, 3, (5, 11)).astype(float)
    got = exact_k_prune_mask(torch.tensor(batch), 4).numpy()
    for r in range(5):
        np.testing.assert_array_equal(got[r], _reference_prune(batch[r], 4))
    with pytest.raises(ProbPruneError):
        exact_k_prune_mask(np.zeros(3), 4)


def test_exact_k_call_sites_follow_the_one_rule():
    from probprune.budgets.apriori import magnitude_prune_count
    from probprune.mc.trials import prune_batched
    from probprune.pruning.sampling import layerwise_topk_mask, pruned_count

    spec = fcn_spec((6, 8, 5, 3), "relu", 1.0)
    g = torch.Generator().manual_seed(0)
    W = [torch.round(torch.rand(4, *L.weight_shape, generator=g, dtype=torch.float64) * 8) / 8 - 0.5 for L in spec.layers]
    U = [torch.rand(4, *L.weight_shape, generator=g, dtype=torch.float64) for L in spec.layers]
    for q in (0.1, 0.5, 0.9):
        for meth in ("magnitude_exact", "random_exact"):
            Wh, _ = prune_batched(spec, W, U, meth, q, "uniform")
            for L, w, u, wh in zip(spec.layers, W, U, Wh):
                k = int(np.floor(q * L.N))
                for t in range(4):
                    sc = (w[t].abs() if meth == "magnitude_exact" else u[t]).numpy().ravel()
                    ref = _reference_prune(sc, k)
                    np.testing.assert_array_equal(wh[t].numpy().ravel() == 0, ref | (w[t].numpy().ravel() == 0))
                    assert int(ref.sum()) == k
    w0 = W[0][0].numpy()
    for k in (0, 3, 17, 48):
        ref = _reference_prune(np.abs(w0).ravel(), k)
        np.testing.assert_array_equal(magnitude_prune_count(w0, k).ravel(), np.where(ref, 0.0, w0.ravel()))
    keep = layerwise_topk_mask({"a": W[0][0]}, 0.45)["a"].numpy().ravel()
    np.testing.assert_array_equal(~keep, _reference_prune(W[0][0].numpy().ravel(), pruned_count(0.45, 48)))


# ------------------------------------------------------------------------------------------------ Clopper-Pearson
def test_clopper_pearson_against_scipy_binomtest_and_old_call_sites():
    from probprune.mc.stats import cp_lower, cp_upper
    from probprune.core.stats import clopper_pearson_interval, clopper_pearson_lower, clopper_pearson_upper
    from probprune.subsetsum.lueker import clopper_pearson, cp_lower_one_sided

    for T in (1, 7, 59, 200):
        xs = np.arange(T + 1) if T < 100 else np.array([0, 1, 13, 100, 199, 200])
        for a in (0.01, 0.05, 0.2):
            lo, hi = clopper_pearson_lower(xs, T, a), clopper_pearson_upper(xs, T, a)
            ref_lo = [stats.binomtest(int(x), T, alternative="greater").proportion_ci(1 - a).low for x in xs]
            ref_hi = [stats.binomtest(int(x), T, alternative="less").proportion_ci(1 - a).high for x in xs]
            np.testing.assert_allclose(lo, ref_lo, atol=1e-12)
            np.testing.assert_allclose(hi, ref_hi, atol=1e-12)
            # every wrapper against scipy, not against the call it wraps
            np.testing.assert_allclose(cp_lower_one_sided(xs, T, a), ref_lo, atol=1e-12)
            np.testing.assert_allclose([cp_lower(int(x), T, a) for x in xs], ref_lo, atol=1e-12)
            np.testing.assert_allclose([cp_upper(int(x), T, a) for x in xs], ref_hi, atol=1e-12)
        ci = [stats.binomtest(int(x), T).proportion_ci(0.95) for x in xs]  # two-sided: alpha/2 in each tail
        ref2 = np.array([[c.low for c in ci], [c.high for c in ci]])
        np.testing.assert_allclose(np.asarray(clopper_pearson_interval(xs, T, 0.95)), ref2, atol=1e-12)
        np.testing.assert_allclose(np.asarray(clopper_pearson(xs, T, 0.95)), ref2, atol=1e-12)
    assert cp_upper(0, 59, 0.05) == pytest.approx(1 - 0.05 ** (1 / 59), rel=1e-12)
    with pytest.raises(ProbPruneError):
        clopper_pearson_lower(5, 4)


# ------------------------------------------------------------------------------------------------ model loader
def test_mc_reads_models_through_the_one_loader(tmp_path):
    from probprune.mc.trials import load_model
    from probprune.net.zoo import mlp
    from probprune.net.io import save_model

    m = mlp((4, 5, 10), seed=0)
    save_model(m, str(tmp_path / "sd.pt"), arch="mlp:5", input_shape=(4,))  # what `probprune train` writes
    torch.save(m, tmp_path / "whole.pt")
    a, b = load_model(str(tmp_path / "sd.pt")), load_model(str(tmp_path / "whole.pt"))
    assert a.spec.widths == b.spec.widths == (4, 5, 10)
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(FileNotFoundError):
        load_model(str(tmp_path / "missing.pt"))


# ------------------------------------------------------------------------------------------------ layout
def test_import_probprune_leaves_the_environment_alone_and_entry_points_limit_threads():
    """One subprocess (imports are slow on a loaded machine): importing the package and its subpackages leaves
    os.environ as it was; the entry-point helper then sets one thread everywhere."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    code = ("import os, sys; e = dict(os.environ)\n"
            "import probprune, probprune.core.registry, probprune.measure.attack, probprune.theory.apriori, probprune.certificates.lemma, "
            "probprune.budgets.apriori, probprune.net.templates, probprune.pruning, probprune.subsetsum.lueker, probprune.mc\n"
            "same = dict(os.environ) == e\n"
            "import torch\nfrom probprune.core.threads import limit_threads\ns = limit_threads()\n"
            "print(same, sorted(s), os.environ['OMP_NUM_THREADS'], torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300).stdout
    assert out.split() == ["True", "['MKL_NUM_THREADS',", "'OMP_NUM_THREADS',", "'OPENBLAS_NUM_THREADS']", "1", "1"]


def test_limit_threads_respects_the_users_variables():
    from probprune.core.threads import THREAD_VARS, limit_threads

    assert all(v in os.environ for v in THREAD_VARS)  # tests/conftest.py sets them, as a user would
    before = dict(os.environ), torch.get_num_threads()
    assert limit_threads(3) == {}
    assert (dict(os.environ), torch.get_num_threads()) == before


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of everything ``path`` imports (relative imports resolved against its package)."""
    pkg = list(path.relative_to(PKG.parent).with_suffix("").parts[:-1])  # package of a module or of an __init__
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = pkg[: len(pkg) - (node.level - 1)] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}
    return out


def test_no_library_module_imports_the_cli():
    offenders = []
    for path in PKG.rglob("*.py"):
        if "cli" in path.relative_to(PKG).parts[:1]:
            continue
        if any(m == "probprune.cli" or m.startswith("probprune.cli.") for m in _imported_modules(path)):
            offenders.append(str(path.relative_to(PKG)))
    assert offenders == []
