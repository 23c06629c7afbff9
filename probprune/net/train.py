"""A small, deterministic CPU training loop (cross-entropy classification) with optional fixed masks.

Determinism: the data order is a function of ``seed`` only (one ``torch.randperm`` per epoch from a
``torch.Generator`` seeded with ``seed``), so two runs with the same seed, model initialisation and thread count give
identical weights. Training can start at step ``start_step`` of that same schedule (weight rewinding to step k,
Frankle et al. 2020): the first ``start_step`` batches are skipped and the LR schedule resumes at that step.

Masks (THEORY.md §5): ``masks`` maps parameter FQNs (state_dict keys) to bool tensors, True = kept. Pruned weights
are zeroed before training, their gradients are zeroed before every optimiser step (so Adam/SGD moments of pruned
entries stay 0 and kept weights get exact gradients), and they are re-zeroed after every step (weight decay cannot
revive them). No hooks, no renamed state_dict keys.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

from probprune.core.errors import ProbPruneError, check_positive

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "step", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (defaults: the LTH paper's LeNet setup, Adam 1.2e-3, batch 60)."""

    epochs: int = 1
    lr: float = 1.2e-3
    batch_size: int = 60
    seed: int = 0
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    fused: bool = True  # torch's fused CPU Adam: ~2x faster, and avoids the slow sqrt(0) path on masked entries

    def steps_per_epoch(self, n_train: int) -> int:
        return math.ceil(n_train / self.batch_size)

    def total_steps(self, n_train: int) -> int:
        return self.epochs * self.steps_per_epoch(n_train)

    def lr_at(self, step: int, total: int) -> float:
        """Learning rate at global step ``step`` of ``total`` ("step": x0.1 at 50% and 75%; "cosine": to 0)."""
        if self.schedule == "constant":
            return self.lr
        if self.schedule == "step":
            f = step / max(total, 1)
            return self.lr * (0.1 ** ((f >= 0.5) + (f >= 0.75)))
        return 0.5 * self.lr * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


@dataclass
class TrainHistory:
    """Per-epoch rows (epoch, step, lr, train_loss, test_acc), the final test accuracy, snapshots of the
    state_dict at the requested steps (``{step: state_dict}``) and the wall time."""

    config: TrainConfig
    rows: list[dict] = field(default_factory=list)
    final_test_acc: float = float("nan")
    final_train_loss: float = float("nan")
    steps: int = 0
    start_step: int = 0
    snapshots: dict = field(default_factory=dict)
    seconds: float = 0.0
    # early stopping on the validation split (when the dataset has one): the epoch with the best validation accuracy
    # (first on ties), its global step and the test accuracy of the weights at that epoch
    es_epoch: int = 0
    es_step: int = 0
    es_val_acc: float = float("nan")
    es_test_acc: float = float("nan")


def _validate(cfg: TrainConfig) -> None:
    if int(cfg.epochs) < 0:
        raise ProbPruneError(f"epochs must be >= 0, got {cfg.epochs}")
    if int(cfg.batch_size) < 1:
        raise ProbPruneError(f"batch_size must be >= 1, got {cfg.batch_size}")
    check_positive(cfg.lr, "lr")
    if cfg.optimizer not in OPTIMIZERS:
        raise ProbPruneError(f"unknown optimizer {cfg.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
    if cfg.schedule not in SCHEDULES:
        raise ProbPruneError(f"unknown LR schedule {cfg.schedule!r}; use one of {', '.join(SCHEDULES)}")
    if cfg.weight_decay < 0:
        raise ProbPruneError(f"weight_decay must be >= 0, got {cfg.weight_decay}")


def _mask_params(model, masks: Mapping[str, object] | None):
    """(parameter, float mask) pairs for ``masks`` keyed by state_dict FQN; validates names and shapes."""
    if not masks:
        return []
    params = dict(model.named_parameters())
    out = []
    for name, m in masks.items():
        p = params.get(name)
        if p is None:
            raise ProbPruneError(f"mask for unknown parameter {name!r}")
        if tuple(m.shape) != tuple(p.shape):
            raise ProbPruneError(f"mask for {name!r} has shape {tuple(m.shape)}, parameter has {tuple(p.shape)}")
        out.append((p, m.to(dtype=p.dtype, device=p.device)))
    return out


def evaluate(model, X, y, batch_size: int = 2048) -> float:
    """Top-1 accuracy of ``model`` on (X, y), in eval mode, without gradients."""
    import torch

    if len(X) != len(y):
        raise ProbPruneError(f"X has {len(X)} rows but y has {len(y)}")
    if len(y) == 0:
        raise ProbPruneError("cannot evaluate on an empty set")
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch_size):
            out = model(X[i: i + batch_size])
            correct += int((out.argmax(dim=1) == y[i: i + batch_size]).sum())
    model.train(was_training)
    return correct / len(y)


def evaluate_loss(model, X, y, batch_size: int = 2048) -> float:
    """Mean cross-entropy of ``model`` on (X, y)."""
    import torch
    import torch.nn.functional as F

    model.eval()
    tot = 0.0
    with torch.no_grad():
        for i in range(0, len(y), batch_size):
            tot += float(F.cross_entropy(model(X[i: i + batch_size]), y[i: i + batch_size], reduction="sum"))
    return tot / len(y)


def train(
    model,
    dataset,
    epochs: int = 1,
    lr: float = 1.2e-3,
    batch_size: int = 60,
    seed: int = 0,
    optimizer: str = "adam",
    masks: Mapping[str, object] | None = None,
    *,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    schedule: str = "constant",
    fused: bool = True,
    start_step: int = 0,
    constant_lr: float | None = None,
    snapshot_steps=(),
    eval_each_epoch: bool = True,
    callback: Callable[[dict], None] | None = None,
    config: TrainConfig | None = None,
) -> TrainHistory:
    """Train ``model`` in place on ``dataset`` (a :class:`probprune.net.data.Dataset`) with cross-entropy.

    ``config`` (a :class:`TrainConfig`) overrides the individual hyper-parameters when given. ``start_step`` resumes
    the seed's data order and LR schedule at that global step (rewinding). ``constant_lr`` replaces the schedule by
    a constant rate (fine-tuning). ``snapshot_steps``: global steps at which a copy of the state_dict is stored in
    ``history.snapshots`` (step 0 = before any update). ``callback`` gets each per-epoch row.
    Returns a :class:`TrainHistory`.
    """
    import torch
    import torch.nn.functional as F

    cfg = config or TrainConfig(epochs=int(epochs), lr=float(lr), batch_size=int(batch_size), seed=int(seed),
                                optimizer=str(optimizer), momentum=float(momentum),
                                weight_decay=float(weight_decay), schedule=str(schedule),
                                fused=bool(fused))
    _validate(cfg)
    n = len(dataset.y_train)
    if n == 0:
        raise ProbPruneError("training set is empty")
    spe = cfg.steps_per_epoch(n)
    total = cfg.total_steps(n)
    if not (0 <= int(start_step) <= total):
        raise ProbPruneError(f"start_step must be in [0, {total}], got {start_step}")
    mp = _mask_params(model, masks)
    snap = {int(s) for s in snapshot_steps}
    hist = TrainHistory(config=cfg, start_step=int(start_step))
    t0 = time.perf_counter()

    with torch.no_grad():
        for p, m in mp:
            p.mul_(m)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        opt = None
        if cfg.fused:
            try:
                opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
            except (RuntimeError, TypeError, ValueError):  # fused kernel unavailable for this build/device
                opt = None
        if opt is None:
            opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)

    def snapshot(step):
        if step in snap:
            hist.snapshots[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    g = torch.Generator().manual_seed(cfg.seed)
    X, y = dataset.X_train, dataset.y_train
    step = 0
    snapshot(int(start_step))
    model.train()
    loss_sum, loss_n = 0.0, 0
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=g)
        if step + spe <= start_step:  # the whole epoch lies before the rewind point
            step += spe
            continue
        loss_sum, loss_n = 0.0, 0
        for b in range(spe):
            if step < start_step:
                step += 1
                continue
            idx = perm[b * cfg.batch_size: (b + 1) * cfg.batch_size]
            rate = constant_lr if constant_lr is not None else cfg.lr_at(step, total)
            for group in opt.param_groups:
                group["lr"] = rate
            opt.zero_grad(set_to_none=False)
            loss = F.cross_entropy(model(X[idx]), y[idx])
            loss.backward()
            lv = loss.item()
            with torch.no_grad():
                for p, m in mp:
                    if p.grad is not None:
                        p.grad.mul_(m)
            opt.step()
            with torch.no_grad():
                for p, m in mp:
                    p.mul_(m)
            if not math.isfinite(lv):
                raise ProbPruneError(f"training diverged (loss {lv}) at step {step}; lower the lr")
            loss_sum += lv * len(idx)
            loss_n += len(idx)
            step += 1
            snapshot(step)
        row = {"epoch": epoch + 1, "step": step, "lr": rate, "train_loss": loss_sum / max(loss_n, 1)}
        has_val = getattr(dataset, "X_val", None) is not None
        if eval_each_epoch or epoch == cfg.epochs - 1 or has_val:
            row["test_acc"] = evaluate(model, dataset.X_test, dataset.y_test)
        if has_val:
            row["val_acc"] = evaluate(model, dataset.X_val, dataset.y_val)
            if not row["val_acc"] <= hist.es_val_acc:  # strictly better (or the first): the early-stopping point
                hist.es_epoch, hist.es_step = epoch + 1, step
                hist.es_val_acc, hist.es_test_acc = row["val_acc"], row["test_acc"]
        hist.rows.append(row)
        if callback is not None:
            callback(row)
        model.train()
    model.eval()
    hist.steps = step
    hist.final_train_loss = loss_sum / loss_n if loss_n else float("nan")
    hist.final_test_acc = evaluate(model, dataset.X_test, dataset.y_test)
    hist.seconds = time.perf_counter() - t0
    return hist
