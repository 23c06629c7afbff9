"""The sympy expressions of THEORY.md, written once and used by both the derivation checks and the bridge.

Every function returns a sympy expression in the symbols it is given; ``lambdify`` them to compare with code.
"""
from __future__ import annotations

import sympy as sp

# positive symbols used across checks
s2, R, lam, t, v = sp.symbols("s2 R lam t v", positive=True)
a, q, p, m, K = sp.symbols("a q p m K", positive=True)
c, s = sp.symbols("c s", positive=True)


def beta(s2_, R_, lam_):
    """THEORY.md §3: beta(s2, R, lam) = R lam/3 + sqrt((R lam/3)^2 + 2 s2 lam)."""
    return R_ * lam_ / 3 + sp.sqrt((R_ * lam_ / 3) ** 2 + 2 * s2_ * lam_)


def B_uniform(m_, a_, lamW):
    """§3.4: B_i = beta(m a^2/3, a, lam_W)."""
    return beta(m_ * a_ ** 2 / 3, a_, lamW)


def eta_RM(m_, a_, q_, lamE):
    """§3.4 RM: beta(m q^3 a^2/3, q a, lam_E)."""
    return beta(m_ * q_ ** 3 * a_ ** 2 / 3, q_ * a_, lamE)


def eta_RR(m_, a_, p_, lamE):
    """§3.4 RR: beta(m p a^2/3, a, lam_E) (and 0 at p = 0, handled by callers)."""
    return beta(m_ * p_ * a_ ** 2 / 3, a_, lamE)


def eta_RRp(m_, a_, p_, lamE):
    """§3.4 RR': beta(m p a^2/(3(1-p)), a max(1, p/(1-p)), lam_E), p < 1."""
    return beta(m_ * p_ * a_ ** 2 / (3 * (1 - p_)), a_ * sp.Max(1, p_ / (1 - p_)), lamE)


def product_form(Bs, etas, Lip=1):
    """(A*): Lip prod(B) (prod(1 + eta/B) - 1)."""
    return Lip * sp.prod(Bs) * (sp.prod([1 + e / b for e, b in zip(etas, Bs)]) - 1)


def Phi(x):
    return (1 + sp.erf(x / sp.sqrt(2))) / 2


def phi(x):
    return sp.exp(-x ** 2 / 2) / sp.sqrt(2 * sp.pi)


def gaussian_g(c_):
    """§3.12: g(c) = 2 Phi(c) - 1 - 2 c phi(c)."""
    return 2 * Phi(c_) - 1 - 2 * c_ * phi(c_)


def rr_equal_share(t_, a_, m_, lam_):
    """§3.9 RR equal-share: p = t (3t - 2 a lam) / (2 m a^2 lam) (before clipping)."""
    return t_ * (3 * t_ - 2 * a_ * lam_) / (2 * m_ * a_ ** 2 * lam_)


def magnitude_cubic(q_, t_, a_, m_, lam_):
    """§3.9 magnitude equal-share: (2 lam m a^2/3) q^3 + (2 lam a t/3) q - t^2."""
    return (2 * lam_ * m_ * a_ ** 2 / 3) * q_ ** 3 + (2 * lam_ * a_ * t_ / 3) * q_ - t_ ** 2


def equal_share_rho(eps, LipProdB, lp):
    """§3.9: rho = (1 + eps/(Lip prod B))^(1/l_p) - 1."""
    return (1 + eps / LipProdB) ** (sp.Integer(1) / lp) - 1


def cp_upper_zero(T, alpha):
    """§6: Clopper-Pearson one-sided upper limit with zero events: 1 - alpha^(1/T)."""
    return 1 - alpha ** (sp.Integer(1) / T)
