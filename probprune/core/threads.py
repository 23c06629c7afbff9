"""Thread settings for entry points only: the ``probprune`` CLI, benchmark scripts and the test suite.

Importing ``probprune`` changes nothing in the user's process (no environment variables, no thread pools). The
entry points call :func:`limit_threads` once, first thing: probprune's linear algebra is many small problems
(SVD/eigh of <= 1000 x 1000 matrices) and multi-threaded BLAS oversubscribes small machines badly (measured: eigh
of a 300x300 Gram matrix 7 ms with 1 thread vs 2.6 s with 2 threads on a loaded 2-core machine).

A choice the user made wins: when ``OMP_NUM_THREADS`` (or the BLAS variable) is already set, nothing is limited
beyond what that variable says. Otherwise the variables are set to ``n`` (inherited by worker processes), the BLAS
pools already loaded are limited at run time (``threadpoolctl``, when installed), and torch's intra-op pool is set
to ``n`` if torch is imported.
"""
from __future__ import annotations

import os
import sys

THREAD_VARS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")


def limit_threads(n: int = 1) -> dict[str, str]:
    """Default BLAS/OpenMP/torch to ``n`` threads unless the user chose otherwise (entry points only).

    Returns the variables this call set (empty when the user had set them all)."""
    n = int(n)
    set_now = {}
    for v in THREAD_VARS:
        if v not in os.environ:
            os.environ[v] = str(n)
            set_now[v] = str(n)
    if set_now:
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=n, user_api="blas")  # pools loaded before this call (e.g. numpy's OpenBLAS)
        except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn, a dependency
            pass
        if "OMP_NUM_THREADS" in set_now and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(n)
    return set_now


__all__ = ["THREAD_VARS", "limit_threads"]
