"""probprune: explicit-constant probabilistic pruning bounds, pruning methods and their Monte Carlo tests.

Setting and notation follow ``THEORY.md`` (shipped as docs/THEORY.md): a network
F(x) = W_l s(W_{l-1} ... s(W_1 x)), no biases, inputs in the unit ball, error
sup_{||x||<=1} ||F(x) - F_pruned(x)||_2.

The answers about a user's network (issue 22): :func:`probprune.certify`, :func:`probprune.budget` and
:func:`probprune.bound` (module :mod:`probprune.api`) return result objects whose ``as_dict()`` is what the
``probprune certify|budget|bound --json`` commands print. They are imported on first use, so ``import probprune``
stays light (no torch).

Importing the package changes nothing in the user's process: thread settings (one BLAS/OpenMP/torch thread by
default; many small SVDs oversubscribe small machines) belong to the entry points: the ``probprune`` CLI, the
benchmark scripts and the test suite call :func:`probprune.core.threads.limit_threads`. Library users who want the same
set ``OMP_NUM_THREADS=1`` (and ``OPENBLAS_NUM_THREADS``/``MKL_NUM_THREADS``) or call ``limit_threads()`` themselves.
Strategies (pruning methods, weight laws, bounds, activations) have one spelling each: :mod:`probprune.core.registry`.
"""
from probprune.core.errors import ProbPruneError, UnsupportedLayerError, HypothesisError

__version__ = "0.1.0"
_API = ("certify", "budget", "bound", "CertifyReport", "BudgetReport", "BoundReport")
__all__ = ["ProbPruneError", "UnsupportedLayerError", "HypothesisError", "__version__", *_API]


def __getattr__(name):
    if name in _API or name == "api":
        import importlib

        api = importlib.import_module("probprune.api")  # sets probprune.api; later lookups skip __getattr__
        return api if name == "api" else getattr(api, name)
    raise AttributeError(f"module 'probprune' has no attribute {name!r}")
