"""Matrix Bernstein (Tropp 2012, Thm 1.6; THEORY §3.2): the tail and its inverse, the one implementation the
a-priori bounds (:mod:`probprune.theory.apriori`) and the sharper statements (:mod:`probprune.theory.sharp`) share."""
from __future__ import annotations

import numpy as np


def beta(s2, R, lam):
    """Inverse of the matrix Bernstein tail (THEORY §3, §3.2 [D]): the positive root t of t^2/2 = lam (s2 + R t/3),
    ``beta = R lam/3 + sqrt((R lam/3)^2 + 2 s2 lam)``. Vectorised; requires s2 >= 0, R >= 0, lam > 0."""
    s2, R, lam = np.asarray(s2, float), np.asarray(R, float), np.asarray(lam, float)
    h = R * lam / 3.0
    return h + np.sqrt(h * h + 2.0 * s2 * lam)


def bernstein_tail(t, v, R, dim_sum):
    """Tropp (2012) Thm 1.6 (THEORY §3.2): P(||sum Z_k|| >= t) <= (d1 + d2) exp(-(t^2/2)/(v + R t/3))."""
    t, v, R = np.asarray(t, float), np.asarray(v, float), np.asarray(R, float)
    return np.minimum(1.0, dim_sum * np.exp(-(t * t / 2.0) / (v + R * t / 3.0)))
