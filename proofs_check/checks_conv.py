"""Pooling Lipschitz facts (§1.7), Lemma C (§3.5) and Theorem RC (§3.6), checked on explicitly built operators."""
from __future__ import annotations

import itertools
import math

import numpy as np

from ._core import hypothesis_cases, register, require


# ------------------------------------------------------------------------------------------ conv operator
def conv_operator(W: np.ndarray, H: int, Wd: int, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """Dense matrix T of the conv map R^{c_in x H x Wd} -> R^{c_out x H_out x W_out} (zero padding, groups 1).

    Also returns, for each input entry, the number of patches (output positions) that read it.
    """
    co, ci, kh, kw = W.shape
    sh, sw = stride
    ph, pw = padding
    dh, dw = dilation
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (Wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    T = np.zeros((co, Ho, Wo, ci, H, Wd))
    count = np.zeros((H, Wd), dtype=int)
    oy, ox = np.meshgrid(np.arange(Ho), np.arange(Wo), indexing="ij")
    for ky, kx in itertools.product(range(kh), range(kw)):
        iy, ix = oy * sh + ky * dh - ph, ox * sw + kx * dw - pw
        ok = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < Wd)
        # distinct (ky, kx) of one patch hit distinct input entries, so this adds each weight once
        T[:, oy[ok], ox[ok], :, iy[ok], ix[ok]] += W[:, :, ky, kx][None]
        np.add.at(count, (iy[ok], ix[ok]), 1)
    T = T.reshape(co * Ho * Wo, ci * H * Wd)
    return T, count, (Ho, Wo)


def _torch_conv(W, x, stride, padding, dilation=(1, 1)):
    import torch
    import torch.nn.functional as Fn

    with torch.no_grad():
        y = Fn.conv2d(torch.from_numpy(x[None]), torch.from_numpy(W), stride=stride, padding=padding,
                      dilation=dilation)
    return y[0].numpy()


def _r(kh, kw, sh, sw, dh=1, dw=1):
    if dh > 1 or dw > 1:
        return kh * kw
    return math.ceil(kh / sh) * math.ceil(kw / sw)


def lemma_c_cases():
    for k in (3, 4, 5):
        for s in (1, 2, 3):
            for pad in (0, k // 2, k - 1):
                yield (k, k), (s, s), (pad, pad), (1, 1)
    yield (3, 5), (1, 2), (1, 2), (1, 1)
    yield (5, 3), (3, 1), (0, 1), (1, 1)
    yield (3, 3), (1, 1), (2, 2), (2, 2)  # dilation 2: r = k_h k_w
    yield (2, 3), (2, 3), (0, 0), (1, 1)


@register("lemmaC-operator", "||T_W|| <= sqrt(r)||mat(W)||, <= r patches per input, T linear in W; strides 1-3, "
          "k in {3,4,5}, with/without padding", "§3.5", "numeric", covers=["lemmaC"])
def _chk_lemma_c():
    rng = np.random.default_rng(35)
    worst = 0.0
    n = 0
    for (kh, kw), (sh, sw), (ph, pw), (dh, dw) in lemma_c_cases():
        co, ci, H, Wd = 3, 2, 9, 8
        W = rng.uniform(-1, 1, (co, ci, kh, kw))
        T, count, _ = conv_operator(W, H, Wd, (sh, sw), (ph, pw), (dh, dw))
        # the explicit operator agrees with torch's conv2d
        x = rng.standard_normal((ci, H, Wd))
        y = _torch_conv(W, x, (sh, sw), (ph, pw), (dh, dw))
        require(np.allclose(T @ x.reshape(-1), y.reshape(-1), atol=1e-9), "explicit operator != torch conv2d")
        r = _r(kh, kw, sh, sw, dh, dw)
        require(count.max() <= r, f"an input lies in {count.max()} > r = {r} patches (k={kh}x{kw}, s={sh}x{sw})")
        nT = np.linalg.norm(T, 2)
        nM = np.linalg.norm(W.reshape(co, -1), 2)
        require(nT <= math.sqrt(r) * nM * (1 + 1e-9), f"||T|| = {nT} > sqrt(r)||mat W|| = {math.sqrt(r) * nM}")
        worst = max(worst, nT / (math.sqrt(r) * nM))
        # linearity: T_W - T_What = T_{W - What}
        Wh = W * (rng.random(W.shape) > 0.4)
        Th, _, _ = conv_operator(Wh, H, Wd, (sh, sw), (ph, pw), (dh, dw))
        Te, _, _ = conv_operator(W - Wh, H, Wd, (sh, sw), (ph, pw), (dh, dw))
        require(np.allclose(T - Th, Te, atol=1e-12), "T_W - T_What != T_{W-What}")
        n += 1
    return f"{n} configurations, max ||T|| / (sqrt(r)||mat W||) = {worst:.3f}"


@register("thm-RC", "Theorem RC: conv net error <= Lemma A with sqrt(r_i)||mat(.)|| norms (sampled sup)", "§3.6",
          "numeric", covers=["thm-RC"])
def _chk_thm_rc():
    import torch
    import torch.nn.functional as Fn

    rng = np.random.default_rng(36)
    worst = 0.0
    for trial in range(8):
        k, s, pad = (3, 1, 1) if trial % 2 == 0 else (4, 2, 0)
        c0, c1, H = 2, 3, 8
        W1 = rng.uniform(-1, 1, (c1, c0, k, k)) / math.sqrt(c0 * k * k)
        Ho = (H + 2 * pad - k) // s + 1
        W2 = rng.uniform(-1, 1, (5, c1 * Ho * Ho)) / math.sqrt(c1 * Ho * Ho)
        P1 = rng.random(W1.shape) < 0.3
        P2 = rng.random(W2.shape) < 0.3
        W1h, W2h = W1 * ~P1, W2 * ~P2
        r = _r(k, k, s, s)

        def net(A, Bm, X):
            h = Fn.relu(Fn.conv2d(X, torch.from_numpy(A), stride=s, padding=pad))
            return h.flatten(1) @ torch.from_numpy(Bm).T

        X = torch.from_numpy(rng.standard_normal((600, c0, H, H)))
        X = X / X.flatten(1).norm(dim=1)[:, None, None, None]
        with torch.no_grad():
            err = (net(W1, W2, X) - net(W1h, W2h, X)).norm(dim=1).max().item()
        nrm = lambda M: np.linalg.norm(M.reshape(M.shape[0], -1), 2)  # noqa: E731
        w1, w1h, e1 = (math.sqrt(r) * nrm(M) for M in (W1, W1h, W1 - W1h))
        w2, w2h, e2 = nrm(W2), nrm(W2h), nrm(W2 - W2h)
        bound = min(e1 * w2h + w1 * e2, e1 * w2 + w1h * e2)
        require(err <= bound * (1 + 1e-9), f"conv net: sampled err {err} > Lemma A bound {bound}")
        worst = max(worst, err / bound)
    return f"8 conv+FC ReLU nets, max sampled err / bound = {worst:.3f}"


# -------------------------------------------------------------------------------------------- pooling
def _windows(n: int, size: int, stride: int):
    return [list(range(st, st + size)) for st in range(0, n - size + 1, stride)]


def _pool(x, wins, kind):
    if kind == "max":
        return np.array([x[w].max() for w in wins])
    return np.array([x[w].mean() for w in wins])


@register("pool-lipschitz", "max pool (non-overlapping) 1-Lipschitz, pool(0)=0; avg pool L = 1/sqrt(w); overlapping: "
          "sqrt(r_p), sqrt(r_p/w); flatten isometry", "§1.7", "numeric",
          covers=["pool-max", "pool-avg", "pool-overlap", "flatten"])
def _chk_pool():
    from hypothesis import strategies as st

    def case(seed, n, size, stride):
        size = min(size, n)
        rng = np.random.default_rng(seed)
        wins = _windows(n, size, stride)
        cover = np.zeros(n, int)
        for w in wins:
            cover[w] += 1
        r_p = int(cover.max())
        u, v = rng.standard_normal(n), rng.standard_normal(n)
        if seed % 3 == 0:  # worst case for max pooling: a difference at one maximal-coverage entry
            v = u.copy()
            v[int(np.argmax(cover))] += 5.0
            u = u - 100.0 * (np.arange(n) != int(np.argmax(cover)))
            v = v - 100.0 * (np.arange(n) != int(np.argmax(cover)))
        d = np.linalg.norm(u - v)
        dm = np.linalg.norm(_pool(u, wins, "max") - _pool(v, wins, "max"))
        da = np.linalg.norm(_pool(u, wins, "avg") - _pool(v, wins, "avg"))
        assert dm <= math.sqrt(r_p) * d * (1 + 1e-12) + 1e-12, ("max", dm, d, r_p)
        assert da <= math.sqrt(r_p / size) * d * (1 + 1e-12) + 1e-12, ("avg", da, d, r_p, size)
        if stride >= size:  # non-overlapping: r_p = 1
            assert r_p <= 1 and dm <= d * (1 + 1e-12) + 1e-12
        A = np.zeros((len(wins), n))
        for k, w in enumerate(wins):
            A[k, w] = 1 / size
        assert np.linalg.norm(A, 2) <= math.sqrt(r_p / size) * (1 + 1e-12)
        if stride == size and n % size == 0:
            assert abs(np.linalg.norm(A, 2) - 1 / math.sqrt(size)) < 1e-12  # L = 1/sqrt(w) exactly

    n = hypothesis_cases(case, st.integers(0, 2**31 - 1), st.integers(1, 30), st.integers(1, 6), st.integers(1, 6),
                         max_examples=200)
    # 2-D max pooling in torch (non-overlapping 2x2 and overlapping 3x3 stride 2: r_p = 4), pool(0) = 0
    import torch
    import torch.nn.functional as Fn

    rng = np.random.default_rng(17)
    X = torch.from_numpy(rng.standard_normal((500, 2, 8, 8)))
    Y = X + torch.from_numpy(rng.standard_normal((500, 2, 8, 8))) * 0.1
    for (k, s_, rp) in ((2, 2, 1), (3, 2, 4)):
        dm = (Fn.max_pool2d(X, k, s_) - Fn.max_pool2d(Y, k, s_)).flatten(1).norm(dim=1)
        da = (Fn.avg_pool2d(X, k, s_) - Fn.avg_pool2d(Y, k, s_)).flatten(1).norm(dim=1)
        d = (X - Y).flatten(1).norm(dim=1)
        require(bool((dm <= math.sqrt(rp) * d * (1 + 1e-12)).all()), f"torch max_pool2d k={k} s={s_}")
        require(bool((da <= math.sqrt(rp / (k * k)) * d * (1 + 1e-12)).all()), f"torch avg_pool2d k={k} s={s_}")
        require(float(Fn.max_pool2d(torch.zeros(1, 1, 4, 4), k, s_).abs().max()) == 0.0, "pool(0) != 0")
    require(torch.allclose(X.flatten(1).norm(dim=1), (X ** 2).sum(dim=(1, 2, 3)).sqrt()), "flatten: l2 != Frobenius")
    return f"{n} hypothesis 1-D cases + torch 2-D max/avg pooling"
