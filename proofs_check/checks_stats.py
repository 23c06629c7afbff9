"""Monte Carlo statistics (THEORY.md §6): the Clopper-Pearson zero-event identity and the minimum trial count."""
from __future__ import annotations

import math

import sympy as sp
from scipy import stats

from . import formulas as F
from ._core import close, register, require, sym_zero


@register("clopper-pearson", "upper(0,T,alpha) = 1 - alpha^(1/T); consistent with 0 events iff T >= ln(alpha)/ln(1-delta) "
          "(59 for alpha = delta = 0.05)", "§6", "symbolic+numeric")
def _chk_cp():
    x, T, al, dl = sp.symbols("x T alpha delta", positive=True)
    y = sp.Symbol("y", positive=True)
    # Beta(1, T) density T (1-y)^(T-1): cdf 1 - (1-x)^T; the (1-alpha) quantile is 1 - alpha^(1/T)
    cdf = sp.integrate(T * (1 - y) ** (T - 1), (y, 0, x), conds="none")
    sym_zero(cdf - (1 - (1 - x) ** T), "Beta(1, T) cdf")
    sym_zero(cdf.subs(x, F.cp_upper_zero(T, al)) - (1 - al), "quantile")
    # 1 - alpha^(1/T) <= delta  <=>  ln(alpha)/T >= ln(1-delta)  <=>  T >= ln(alpha)/ln(1-delta) (ln(1-delta) < 0)
    sym_zero(sp.log(1 - F.cp_upper_zero(T, al)) - sp.log(al) / T, "log of 1 - upper")
    Tmin = math.log(0.05) / math.log(0.95)
    require(58 < Tmin < 59 and math.ceil(Tmin) == 59, f"T_min(0.05, 0.05) = {Tmin}")
    for Tn in (1, 2, 10, 58, 59, 500):
        for a_ in (0.01, 0.05, 0.2):
            close(stats.beta.ppf(1 - a_, 1, Tn), 1 - a_ ** (1 / Tn), rtol=1e-9, what=f"scipy Beta(1,{Tn}) quantile")
    require(1 - 0.05 ** (1 / 59) <= 0.05 < 1 - 0.05 ** (1 / 58), "59 is the smallest T")
    return f"symbolic cdf/quantile; T_min(0.05, 0.05) = ceil({Tmin:.2f}) = 59"
