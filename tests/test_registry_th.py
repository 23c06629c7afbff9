"""TH (issue 22 item 5): registries of behaviour instead of string switches.

* the before/after grid (tests/th_golden_grid.py, recorded on the commit before the refactor): bit-identical numbers,
  JSON and error messages of a-priori bounds, budgets, calibrated bounds and the §9 per-entry functions;
* the registry's strategy objects (laws, entry models, pruning methods);
* a guard that counts the string switches left in the files this change owns."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.mark.slow
def test_golden_grid_bit_identical():
    from th_golden_grid import GOLDEN, grid

    want = json.loads(GOLDEN.read_text())
    got = grid()
    assert sorted(got) == sorted(want)
    bad = [k for k in want if got[k] != want[k]]
    assert not bad, f"{len(bad)} grid entries changed, e.g. {bad[:5]}"
