"""Masks: validation, application, files, torch.nn.utils.prune round trips (issue 3)."""
import pytest
import torch
from torch.nn.utils import prune as tprune

from probprune.core.errors import ProbPruneError
from probprune.net.zoo import mlp
from probprune.pruning import (apply_mask, from_torch_prune, load_mask, maskable_parameters, prune,
                               remove_mask_parametrizations, save_mask, to_torch_prune, validate_mask)


def _mask(m, seed=0, d=0.5):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.rand(p.shape, generator=g) < d for k, p in maskable_parameters(m).items()}


def test_maskable_set_and_exclusions():
    m = mlp((6, 5, 4, 3))
    assert list(maskable_parameters(m)) == ["0.weight", "2.weight", "4.weight"]
    assert list(maskable_parameters(m, exclude_first=True, exclude_last=True)) == ["2.weight"]
    assert "0.bias" in maskable_parameters(m, include_bias=True)


def test_validate_errors():
    m = mlp((6, 5, 3))
    with pytest.raises(ProbPruneError, match="unknown parameter"):
        validate_mask(m, {"1.weight": torch.ones(5, 6, dtype=torch.bool)})
    with pytest.raises(ProbPruneError, match="shape"):
        validate_mask(m, {"0.weight": torch.ones(6, 5, dtype=torch.bool)})
    with pytest.raises(ProbPruneError):
        validate_mask(m, {"0.weight": torch.full((5, 6), 0.5)})
    with pytest.raises(ProbPruneError):
        validate_mask(m, [1, 2])


def test_apply_multiply_keeps_keys():
    m = mlp((6, 5, 3), seed=0)
    keys = list(m.state_dict())
    mask = _mask(m)
    apply_mask(m, mask)
    assert list(m.state_dict()) == keys
    assert bool((m[0].weight[~mask["0.weight"]] == 0).all())


def test_apply_parametrize_enforces_mask_and_removes_cleanly():
    m = mlp((6, 5, 3), seed=0)
    keys = list(m.state_dict())
    mask = _mask(m)
    apply_mask(m, mask, how="parametrize")
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        m(torch.randn(4, 6)).pow(2).sum().backward()
        opt.step()
    assert bool((m[0].weight[~mask["0.weight"]] == 0).all())
    # re-pruning through the parametrization respects the earlier mask
    apply_mask(m, {"0.weight": torch.ones(5, 6, dtype=torch.bool)}, how="parametrize")
    assert bool((m[0].weight[~mask["0.weight"]] == 0).all())
    remove_mask_parametrizations(m)
    assert sorted(m.state_dict()) == sorted(keys)
    assert bool((m[0].weight[~mask["0.weight"]] == 0).all())
    with pytest.raises(ProbPruneError):
        apply_mask(m, mask, how="hooks")


def test_file_round_trip(tmp_path):
    m = mlp((6, 5, 3))
    mask = _mask(m, 3)
    p = tmp_path / "sub" / "mask.pt"
    save_mask(mask, p, meta={"method": "random"})
    back = load_mask(p, model=m)
    assert back.keys() == mask.keys() and all(torch.equal(back[k], mask[k]) for k in mask)
    bad = tmp_path / "bad.pt"
    torch.save({"x": 1}, bad)
    with pytest.raises(ProbPruneError):
        load_mask(bad)
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ProbPruneError):
        load_mask(bad)
    with pytest.raises(FileNotFoundError):
        load_mask(tmp_path / "none.pt")
    with pytest.raises(ProbPruneError):
        load_mask(p, model=mlp((7, 5, 3)))


def test_torch_prune_round_trip():
    m = mlp((6, 5, 3), seed=1)
    mask = _mask(m, 4)
    to_torch_prune(m, mask)
    back = from_torch_prune(m)
    assert all(torch.equal(back[k], mask[k]) for k in mask)
    # torch combines a second pruning with the first: the new mask is nested in ours
    tprune.l1_unstructured(m[0], "weight", amount=0.5)
    again = from_torch_prune(m)
    assert bool((again["0.weight"] <= mask["0.weight"]).all())
    # import a torch-made mask into a clean model
    clean = mlp((6, 5, 3), seed=1)
    validate_mask(clean, again)
    with pytest.raises(ProbPruneError):
        from_torch_prune(clean)


def test_prune_respects_previous_mask_all_methods():
    torch.manual_seed(0)
    X, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    for method, kw in [("magnitude", {}), ("magnitude", {"scope": "global"}), ("random", {"scheme": "erk"}),
                       ("snip", {}), ("grad", {})]:
        m = mlp((6, 8, 3), seed=0)
        first = prune(m, method, 0.3, X=X, y=y, **kw).mask
        second = prune(m, method, 0.6, X=X, y=y, prev_mask=first, **kw).mask
        for k in first:
            assert bool((second[k] <= first[k]).all()), (method, k)
