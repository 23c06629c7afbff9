"""proofs_check: machine-checked algebra for the derived ([D]) statements of docs/THEORY.md.

``python -m proofs_check`` runs every check and prints a table (statement, THEORY.md reference, method, status);
it exits non-zero on any failure or on a [D] statement without a check. ``--json`` prints the report for machines.

Two kinds of checks:
- *derivation*: the math itself, with sympy where the step is symbolic (moments by integration, solve and
  substitute back, induction steps for general depth, signs of derivatives) and numerically on dense grids and
  hypothesis-generated cases where sympy cannot prove an inequality (labelled "numeric");
- *bridge*: each formula implemented in ``probprune`` equals the sympy expression (lambdified, compared on seeded
  random points), so a typo in the code fails here.

Python API: :func:`run_all` returns a :class:`Report`; :data:`D_STATEMENTS` lists the [D] statements.
"""
import os as _os

# Small dense matrices only: BLAS threads cost more than they gain. Effective only if numpy is not yet imported;
# run_all() additionally limits threads with threadpoolctl.
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    _os.environ.setdefault(_v, "1")

from ._core import REGISTRY, Check, CheckResult, ProofFailure  # noqa: E402
from .runner import Report, load_checks, run_all  # noqa: E402
from .statements import D_IDS, D_STATEMENTS, DStatement  # noqa: E402

__all__ = ["run_all", "load_checks", "Report", "Check", "CheckResult", "ProofFailure", "REGISTRY", "D_STATEMENTS",
           "D_IDS", "DStatement"]
