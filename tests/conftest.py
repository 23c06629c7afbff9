"""Test-wide settings: one intra-op thread per pytest worker (the suite runs with -n 2 on 2 cores)."""
import os

for v in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(v, "1")

import torch  # noqa: E402

torch.set_num_threads(1)


import pytest  # noqa: E402


@pytest.fixture
def full_mixed_fails(monkeypatch):
    """certify_chains' full mixed bound (pair_bounds="full") raises a numerical failure; the cheaper variants run as
    usual (tests of auto's fallbacks)."""
    import probprune.certificates.tight as T

    real = T.lemma_a_mixed

    def flaky(*a, **kw):
        if kw.get("pair_bounds", "full") == "full":
            raise FloatingPointError("injected")
        return real(*a, **kw)

    monkeypatch.setattr(T, "lemma_a_mixed", flaky)
