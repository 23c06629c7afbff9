"""Test-wide settings: one intra-op thread per pytest worker (the suite runs with -n 2 on 2 cores)."""
import os

for v in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(v, "1")

import torch  # noqa: E402

torch.set_num_threads(1)
