"""Small random CNNs with max pooling shared by the mixed-bound tests (tests/test_mixed_maxpool_tc.py,
tests/test_tight_tg_mixed.py)."""
from __future__ import annotations

import torch
import torch.nn as nn


def maxpool_cnn(seed, hw, ch, two, bias, hidden: int = 3):
    """conv 3x3 -> ReLU -> max pool 2 (twice when ``two``, the second with ceil_mode) -> flatten -> fc ``hidden`` ->
    ReLU -> fc 2, float64, in eval mode, weights from ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    layers = [nn.Conv2d(1, ch, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(2)]
    if two:
        layers += [nn.Conv2d(ch, ch, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
    body = nn.Sequential(*layers, nn.Flatten()).double()
    with torch.no_grad():
        n = body(torch.zeros(1, 1, hw, hw, dtype=torch.float64)).shape[1]
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(n, hidden, bias=bias), nn.ReLU(),
                         nn.Linear(hidden, 2, bias=bias)).double().eval()
