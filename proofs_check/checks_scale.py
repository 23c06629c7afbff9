"""Certified norms and budgets at scale (THEORY.md §11): the scaled Gram bound (11.1), the periodic convolution bound
on half of the frequencies (11.2), the soundness of the certified budget search (11.3) and the lower-bound shapes
(11.4), each against an independent ground truth (SVD of the explicit matrix/operator, ``certify_graph`` recomputed
from the pruned weights, brute-force loops)."""
from __future__ import annotations

import numpy as np

from ._core import import_attr, register, require
from .checks_conv import conv_operator


@register("scale-gram", "11.1: scaled Gram bound >= SVD norm at scales 1e-300..1e300, mixed magnitudes, batched == "
          "single, and within 1e-6 of it", "§11.1", "numeric", covers=["norm-scaled-gram"])
def _chk_gram():
    torch = __import__("torch")
    spectral_norm_upper = import_attr("probprune.theory.norms", "spectral_norm_upper")
    matrix_norm_upper = import_attr("probprune.theory.norms", "matrix_norm_upper")
    rng = np.random.default_rng(111)
    n = 0
    for scale in (1e-300, 1e-200, 1e-20, 1.0, 1e20, 1e200, 1e300):
        for _ in range(20):
            m, k = (int(x) for x in rng.integers(1, 25, 2))
            M = rng.standard_normal((m, k))
            ex = float(np.linalg.svd(M, compute_uv=False)[0]) * scale
            ub = spectral_norm_upper(M * scale)
            ubt = float(matrix_norm_upper(torch.from_numpy(M * scale)))
            require(ub >= ex * (1 - 1e-15) and ubt >= ex * (1 - 1e-15), f"bound below SVD at scale {scale}")
            require(ub <= ex * (1 + 1e-6), f"bound loose at scale {scale}")
            n += 1
    M = rng.standard_normal((30, 20)) * np.logspace(-300, 0, 20)[None, :]
    require(spectral_norm_upper(M) >= np.linalg.svd(M, compute_uv=False)[0], "mixed magnitudes")
    return f"{n} matrices over 7 scales + mixed magnitudes"


@register("scale-conv", "11.2: rfft-half Gram conv bound >= SVD of the explicit operator (stride, padding, dilation, "
          "groups, 1-D) and == the full complex SVD over all frequencies", "§11.2", "numeric",
          covers=["norm-conv-rfft"])
def _chk_conv():
    conv_norm_fft_upper = import_attr("probprune.theory.norms", "conv_norm_fft_upper")
    rng = np.random.default_rng(112)
    n = 0
    for k in ((3, 3), (2, 4), (5, 3), (1, 1)):
        for s in ((1, 1), (2, 2), (1, 3)):
            for p in ((0, 0), (1, 1), (2, 0)):
                for d in ((1, 1), (2, 1)):
                    lo = max(k) * max(d)
                    H, Wd = (int(x) for x in rng.integers(lo, lo + 5, 2))
                    W = rng.standard_normal((3, 2, *k)) * 10.0 ** rng.integers(-150, 150)
                    T, _, _ = conv_operator(W, H, Wd, s, p, d)
                    ex = float(np.linalg.svd(T, compute_uv=False)[0]) if T.size else 0.0
                    require(conv_norm_fft_upper(W, (H, Wd), s, p, d) >= ex, f"conv {k} {s} {p} {d}")
                    n += 1
    for _ in range(10):  # groups: max over groups; 1-D
        g = int(rng.integers(1, 4))
        W = rng.standard_normal((2 * g, 2, 3, 3))
        ex = max(np.linalg.svd(conv_operator(W[2 * j:2 * j + 2], 6, 5, (1, 1), (1, 1))[0], compute_uv=False)[0]
                 for j in range(g))
        require(conv_norm_fft_upper(W, (6, 5), 1, 1, 1, groups=g) >= ex, "groups")
        W1 = rng.standard_normal((3, 2, 3))
        T, _, _ = conv_operator(W1[:, :, None, :], 1, 9, (1, 2), (0, 1), (1, 1))
        require(conv_norm_fft_upper(W1, (9,), 2, 1, 1) >= np.linalg.svd(T, compute_uv=False)[0], "1-D")
        n += 2
    for co, ci, h in ((4, 3, 5), (5, 5, 6), (2, 6, 7)):
        W = rng.standard_normal((co, ci, 3, 3))
        F = np.fft.fft2(W, s=(h + 2, h + 2), axes=(2, 3))
        full = float(np.linalg.svd(np.transpose(F, (2, 3, 0, 1)).reshape(-1, co, ci), compute_uv=False)[:, 0].max())
        v = conv_norm_fft_upper(W, (h, h), 1, 1)
        require(full <= v <= full * (1 + 1e-8), "rfft half == full complex SVD")
        n += 1
    return f"{n} convolution cases"


@register("scale-budget", "11.3: the certified budget's reported certificate equals certify_graph of the pruned "
          "network and is <= eps (random MLPs with biases, a conv net)", "§11.3", "numeric",
          covers=["budget-certified-sound", "scale-certified-only"])
def _chk_budget():
    torch = __import__("torch")
    certified_budget = import_attr("probprune.budgets.certified", "certified_budget")
    certify_graph = import_attr("probprune.certificates.lemma", "certify_graph")
    graph_from_torch = import_attr("probprune.net", "from_torch")
    n = 0
    for seed, eps in ((0, 0.05), (1, 0.3), (2, 1.0)):
        torch.manual_seed(seed)
        m = torch.nn.Sequential(torch.nn.Linear(12, 9), torch.nn.ReLU(), torch.nn.Linear(9, 7), torch.nn.ReLU(),
                                torch.nn.Linear(7, 3))
        convnet = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                      torch.nn.Linear(3 * 5 * 5, 4))
        for model, shape in ((m, (12,)), (convnet, (2, 5, 5))):
            g = graph_from_torch(model.eval(), shape)
            r = certified_budget(g, eps, certificate="lemma-a")  # §11.3 is the Cert-D search
            masks = {}
            for L, node in zip(r.layers, g.weight_nodes):
                flat = np.abs(node.op.weight.ravel())
                keep = np.ones(flat.size, bool)
                keep[np.argsort(flat, kind="stable")[:L.max_prunable]] = False
                masks[L.name] = keep.reshape(node.op.weight.shape)
            c = certify_graph(g, masks)
            require(c.eps <= eps, f"certificate {c.eps} > eps {eps}")
            require(r.eps_achieved <= eps, "reported certificate > eps")
            require(c.eps <= r.eps_achieved * (1 + 1e-9) and r.eps_achieved <= c.eps * (1 + 1e-5),
                    "reported certificate far from the recomputed one")
            n += 1
    return f"{n} budgets recomputed by certify_graph"


@register("scale-cholesky", "11.5: the Cholesky certificate at mu = (estimate (1+1e-6))^2 is >= the exact block norm "
          "(SVD), falls back when mu is too small, and is within 1e-5 of the eigenvalue bound", "§11.5", "numeric",
          covers=["norm-cholesky-hint"])
def _chk_cholesky():
    conv_norm_fft_upper = import_attr("probprune.theory.norms", "conv_norm_fft_upper")
    conv_norm_fft_estimate = import_attr("probprune.theory.norms", "conv_norm_fft_estimate")
    rng = np.random.default_rng(115)
    n = 0
    for _ in range(40):
        co, ci = (int(x) for x in rng.integers(1, 7, 2))
        k = int(rng.integers(1, 4))
        H = int(rng.integers(k, 8))
        W = rng.standard_normal((co, ci, k, k)) * 10.0 ** rng.integers(-100, 100)
        T, _, _ = conv_operator(W, H, H, (1, 1), (1, 1))
        ex = float(np.linalg.svd(T, compute_uv=False)[0])
        est = conv_norm_fft_estimate(W, (H, H), 1)
        ref = conv_norm_fft_upper(W, (H, H), 1, 1)
        for h in (est, est * 0.5, est * 2.0):  # a good guess, one too small (fallback), one too large
            v = conv_norm_fft_upper(W, (H, H), 1, 1, hint=h)
            require(v >= ex, "Cholesky certificate below the exact norm")
            if h == est:
                require(v <= ref * (1 + 1e-5), "Cholesky certificate loose at a good hint")
            n += 1
    return f"{n} hinted certificates"


@register("scale-shapes", "11.4: max(||E||_F/sqrt(min(m,n)), row/col norms) <= ||E||, |u^T W v| <= ||W||, running "
          "group maximum == loop", "§11.4", "numeric", covers=["budget-shapes"])
def _chk_shapes():
    running = import_attr("probprune.budgets.certified", "_running_group_max")
    rng = np.random.default_rng(114)
    for _ in range(300):
        m, k = (int(x) for x in rng.integers(1, 20, 2))
        E = rng.standard_normal((m, k)) * (rng.random((m, k)) < rng.random())
        s = np.linalg.svd(E, compute_uv=False)[0] if E.size else 0.0
        lb = max(np.linalg.norm(E) / np.sqrt(min(m, k)), np.linalg.norm(E, axis=1).max(), np.linalg.norm(E, axis=0).max())
        require(lb <= s * (1 + 1e-12) + 1e-300, "shape lower bound")
        u, v = rng.standard_normal(m), rng.standard_normal(k)
        require(abs(u @ E @ v) / (np.linalg.norm(u) * np.linalg.norm(v)) <= s * (1 + 1e-12) + 1e-300, "u^T E v")
        g = rng.integers(0, 5, 40)
        x = rng.random(40)
        acc, ref, mx = np.zeros(5), [], 0.0
        for a, b in zip(x, g):
            acc[b] += a
            mx = max(mx, acc[b])
            ref.append(mx)
        require(np.allclose(running(x, g), ref), "running group max")
    return "300 matrices and running maxima"
