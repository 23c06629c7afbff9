"""probprune: explicit-constant probabilistic pruning bounds, pruning methods and their Monte Carlo tests.

Setting and notation follow ``THEORY.md`` (shipped as docs/THEORY.md): a network
F(x) = W_l s(W_{l-1} ... s(W_1 x)), no biases, inputs in the unit ball, error
sup_{||x||<=1} ||F(x) - F_pruned(x)||_2.
"""
import os as _os

# probprune's linear algebra is many small problems (SVD/eigh of <= 1000 x 1000 matrices); multi-threaded
# OpenBLAS oversubscribes small machines badly (measured: eigh of a 300x300 Gram matrix 7 ms with 1 thread vs
# 2.6 s with 2 threads on a loaded 2-core machine). Default to one BLAS thread unless the user chose otherwise;
# this only takes effect if numpy has not been imported yet.
for _v in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    _os.environ.setdefault(_v, "1")

from .errors import ProbPruneError, UnsupportedLayerError, HypothesisError

__version__ = "0.1.0"
__all__ = ["ProbPruneError", "UnsupportedLayerError", "HypothesisError", "__version__"]
