"""The training engine, on Lightning: a backbone and a head trained together under a strategy.

The strategy decides which backbone groups train in each epoch and at which learning rate; the
engine does the rest: AdamW with linear warm-up then cosine decay (stepped per optimiser step),
optional L2-SP towards the pre-trained weights, BatchNorm statistics kept (all of them when the
strategy starts from pre-trained weights, else those of frozen groups),
early stopping on the validation loss, checkpoints (best and last) for resuming, and the best
weights restored into the caller's backbone and head at the end.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.utilities import move_data_to_device
from torch import nn
from torch.utils.data import DataLoader
from torchmetrics import MeanMetric, MetricCollection

from ..data.sources import Item
from ..errors import HeadstartError, check_choice
from ..features.speed import DEVICES, PRECISIONS
from ..heads.tasks import Task
from ..modalities import get_modality
from ..strategies.base import Strategy, freeze_frozen_batchnorm, set_trainable
from ..zoo.backbone import Backbone
from .data import Collate

LAST = "last.ckpt"
BEST_PREFIX = "best-"


@dataclass
class TrainConfig:
    epochs: int = 5
    batch_size: int = 32
    seed: int = 0
    label_smoothing: float = 0.1
    l2sp: float = 0.0  # + l2sp/2 * sum ||w - w0||^2 over trainable backbone weights
    weight_decay: float = 0.01  # AdamW decoupled decay; never on norms and biases
    warmup_fraction: float = 0.1  # linear warm-up over this fraction of all steps, then cosine
    patience: int = 3  # early stopping on val_loss
    precision: str = "fp32"  # "fp32" or "bf16" (bf16-mixed)
    device: str = "auto"  # auto | cpu | cuda
    augment: bool = True  # images: timm's training transform
    workers: int = 0  # DataLoader workers
    workdir: Path | None = None  # checkpoints (best-*.ckpt, last.ckpt); a temp dir when None
    resume: bool = False  # continue from workdir/last.ckpt when present
    progress: bool = True  # Lightning's progress bar on a terminal, else a line now and then
    deadline: float | None = None  # time.monotonic() at which training stops (a budget)


@dataclass
class TrainData:
    items: list[Item]  # images (item.path) or texts (item.text)
    targets: np.ndarray  # int64 class indices, float32 0/1 matrix or float32 values
    # the pre-trained backbone's cached features, where read: frozen heads and the new head's
    # input normaliser use them; the engine itself does not
    features: np.ndarray | None = None


def train(
    backbone: Backbone,
    head: nn.Module,
    task: Task,
    strategy: Strategy,
    train: TrainData,
    val: TrainData | None,
    cfg: TrainConfig,
    *,
    callbacks: Sequence[Callback] = (),
) -> list[dict]:
    """Train `backbone` and `head` in place.

    With validation data, the weights of the epoch with the lowest val_loss are restored into
    backbone and head at the end; without, the last weights are kept. For a head-first strategy
    the starting point counts as epoch 0 (first in the history, without train_loss) and is kept
    when no epoch beats it. Both come back on the CPU, in eval mode, with their parameters'
    requires_grad as they were given.

    Returns one dict per epoch (including epochs restored from a resumed checkpoint): epoch
    (1-based), train_loss, val_loss, val_accuracy (classification) / val_f1 (multilabel, micro)
    / val_mae (regression), lr_head, trainable_groups, seconds.

    `callbacks` are extra Lightning callbacks (progress reporting, tests). Ctrl+C stops training
    with KeyboardInterrupt (Lightning alone would exit the process); workdir/last.ckpt then holds
    the last completed epoch, for resume=True.
    """
    _check(backbone, task, train, val, cfg)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    requires_grad = [p.requires_grad for p in [*backbone.parameters(), *head.parameters()]]
    with ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        _quiet_warnings()
        if cfg.workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="headstart-")))
        else:
            workdir = Path(cfg.workdir)
            workdir.mkdir(parents=True, exist_ok=True)
        last = workdir / LAST
        resume_from = last if cfg.resume and last.exists() else None
        if resume_from is None:
            _remove_old_checkpoints(workdir)

        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        module = _Module(backbone, head, task, strategy, cfg)
        has_val = val is not None and len(val.items) > 0
        best = ModelCheckpoint(  # weights of the epoch with the lowest val_loss
            dirpath=workdir,
            filename=BEST_PREFIX + "{epoch}",
            monitor="val_loss",
            mode="min",
            save_top_k=1,
            save_weights_only=True,
            save_on_train_epoch_end=True,
            enable_version_counter=False,
        )
        # every epoch: Lightning's own save_last only follows a new best
        latest = ModelCheckpoint(
            dirpath=workdir,
            filename=LAST.removesuffix(".ckpt"),
            save_top_k=1,
            save_on_train_epoch_end=True,
            enable_version_counter=False,
        )
        stop = EarlyStopping("val_loss", patience=cfg.patience, check_on_train_epoch_end=True)
        trainer = pl.Trainer(
            max_epochs=cfg.epochs,
            accelerator=_accelerator(cfg.device),
            devices=1,
            precision="bf16-mixed" if cfg.precision == "bf16" else "32-true",
            logger=False,
            callbacks=[
                *([stop, best] if has_val else []),
                *_budget_and_lines(cfg),
                *callbacks,
                latest,
            ],
            default_root_dir=workdir,
            enable_model_summary=False,
            enable_progress_bar=cfg.progress and sys.stderr.isatty(),
            num_sanity_val_steps=0,
        )
        loaders = _loaders(backbone, train, val if has_val else None, cfg)
        start = None
        if has_val and strategy.head_first and resume_from is None:
            start = _score_start(module, loaders[1], cfg)
        try:
            _fit(trainer, module, loaders, resume_from)
        finally:
            module.finish(requires_grad)
        if has_val and best.best_model_path and Path(best.best_model_path).exists():
            state = torch.load(best.best_model_path, map_location="cpu", weights_only=True)
            module.load_state_dict(state["state_dict"])
        history = [dict(entry) for entry in module.history]
        if start is not None:
            history = _keep_start_if_best(module, *start, history)
        return history


# ---- the Lightning module ----------------------------------------------------------------------


class _Module(pl.LightningModule):
    def __init__(self, backbone: Backbone, head: nn.Module, task: Task, strategy, cfg):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.task, self.strategy, self.cfg = task, strategy, cfg
        self.modality = get_modality(backbone.modality)
        self.train_loss = task.loss(cfg.label_smoothing)
        self.eval_loss = task.loss(0.0)  # val_loss is the plain loss, comparable across runs
        self.group_count = len(backbone.groups())
        # L2-SP anchors: plain tensors (not buffers) so that checkpoints stay the model's size
        self.anchored = [p for g in backbone.groups() for p in g.params] if cfg.l2sp else []
        self.anchors = [p.detach().clone() for p in self.anchored]
        self.history: list[dict] = []
        self.top_groups = self.group_count
        self.lr_head = float("nan")
        self.val_metrics: dict = {}
        # the task's own metrics, those the history reports (children: they follow the device)
        every = task.metrics()
        self.val_scores = MetricCollection({key: every[key] for key in task.history})
        self.val_loss_mean = MeanMetric(nan_strategy="disable")  # a NaN loss stays NaN
        self.val_count = 0

    # -- modes and trainable groups

    def train(self, mode: bool = True):
        super().train(mode)
        if mode:  # whoever switches to training (Lightning after validation, the engine)
            freeze_frozen_batchnorm(self.backbone, every=self.strategy.keep_norm_statistics)
        return self

    def apply_strategy(self) -> None:
        """Trainable groups of this epoch, then train mode (frozen BatchNorm stays in eval)."""
        self.top_groups = self.strategy.trainable_groups(self.current_epoch, self.group_count)
        set_trainable(self.backbone, self.top_groups)
        for param in self.head.parameters():
            param.requires_grad_(True)
        self.train()

    def setup(self, stage: str) -> None:
        memory_format = self.modality.memory_format()
        if memory_format is not None:
            self.to(memory_format=memory_format)

    def on_fit_start(self) -> None:
        self.anchors = [a.to(self.device) for a in self.anchors]
        self.apply_strategy()

    def finish(self, requires_grad: list[bool]) -> None:
        """Hand the modules back: CPU, contiguous, eval mode, requires_grad as given."""
        self.cpu()
        if self.modality.memory_format() is not None:
            self.to(memory_format=torch.contiguous_format)
        self.anchors = []
        params = [*self.backbone.parameters(), *self.head.parameters()]
        for param, flag in zip(params, requires_grad, strict=True):
            param.requires_grad_(flag)
        self.backbone.eval()
        self.head.eval()

    # -- batches

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        if batch is None:
            return None
        inputs, targets = batch
        return self.modality.before_transfer(self.backbone, inputs), targets

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if batch is None:
            return None
        inputs, targets = batch
        return self.modality.after_transfer(inputs), targets

    def forward(self, inputs) -> torch.Tensor:
        return self.head(self.backbone(inputs)).float()

    # -- training

    def on_train_epoch_start(self) -> None:
        self.apply_strategy()
        self.epoch_start = time.perf_counter()
        self.train_sum = torch.zeros((), device=self.device)
        self.train_count = 0
        self.val_metrics = {}

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        optimizer = self.optimizers(use_pl_optimizer=False)
        self.lr_head = next(g["lr"] for g in optimizer.param_groups if g["name"] == "head")

    def training_step(self, batch, batch_idx: int):
        if batch is None:  # every row unreadable: skip the step
            return None
        inputs, targets = batch
        loss = self.train_loss(self(inputs), targets)
        self.train_sum += loss.detach() * len(targets)
        self.train_count += len(targets)
        if self.cfg.l2sp:
            loss = loss + self.cfg.l2sp / 2 * self.l2sp_penalty()
        return loss

    def l2sp_penalty(self) -> torch.Tensor:
        terms = [
            (p - a).pow(2).sum()
            for p, a in zip(self.anchored, self.anchors, strict=True)
            if p.requires_grad
        ]
        return torch.stack(terms).sum() if terms else torch.zeros((), device=self.device)

    def on_train_epoch_end(self) -> None:
        count = max(self.train_count, 1)
        entry = {
            "epoch": self.current_epoch + 1,
            "train_loss": float(self.train_sum) / count if self.train_count else float("nan"),
            **self.val_metrics,
            "lr_head": float(self.lr_head),
            "trainable_groups": int(self.top_groups),
            "seconds": time.perf_counter() - self.epoch_start,
        }
        self.history.append(entry)

    # -- validation

    def on_validation_epoch_start(self) -> None:
        self.val_scores.reset()
        self.val_loss_mean.reset()
        self.val_count = 0

    def validation_step(self, batch, batch_idx: int) -> None:
        if batch is None:
            return
        inputs, targets = batch
        logits = self(inputs)
        self.val_loss_mean.update(self.eval_loss(logits, targets).detach(), len(targets))
        self.val_scores.update(self.task.probabilities(logits.detach()), targets)
        self.val_count += len(targets)

    def on_validation_epoch_end(self) -> None:
        metrics = self.summarise_validation()
        if metrics:
            self.val_metrics = metrics
            self.log("val_loss", metrics["val_loss"], prog_bar=True)

    def summarise_validation(self) -> dict:
        """val_loss and the task's headline metrics (history names), from its collection."""
        if not self.val_count:
            return {}
        scores = self.val_scores.compute()
        metrics = {"val_loss": float(self.val_loss_mean.compute())}
        metrics.update({name: float(scores[key]) for key, name in self.task.history.items()})
        return metrics

    # -- optimiser and schedule

    def configure_optimizers(self):
        groups = []
        for group in self.strategy.optimizer_groups(self.backbone, self.head):
            # L2-SP replaces decay towards zero for the backbone (Li et al., 2018)
            decay = 0.0 if self.cfg.l2sp and group["name"] != "head" else self.cfg.weight_decay
            weights = [p for p in group["params"] if p.ndim > 1]
            flat = [p for p in group["params"] if p.ndim <= 1]  # norms and biases: no decay
            if weights:
                groups.append({**group, "params": weights, "weight_decay": decay})
            if flat:
                name = group["name"] if not weights else f"{group['name']}.no_decay"
                groups.append({**group, "params": flat, "weight_decay": 0.0, "name": name})
        optimizer = torch.optim.AdamW(groups)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_cosine(total, self.cfg.warmup_fraction)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": schedule, "interval": "step", "frequency": 1},
        }

    # -- checkpoints carry the history, so a resumed run reports every epoch

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["headstart_history"] = [dict(entry) for entry in self.history]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.history = [dict(entry) for entry in checkpoint.get("headstart_history", [])]


def warmup_cosine(total: int, warmup_fraction: float):
    """Multiplier of the base rate at optimiser step `step` (0-based) of `total`: linear warm-up
    over round(warmup_fraction * total) steps, then cosine decay towards 0."""
    warm = int(round(max(0.0, warmup_fraction) * total))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


# ---- helpers -----------------------------------------------------------------------------------


def _check(backbone, task, train_data, val, cfg: TrainConfig) -> None:
    check_choice("precision", cfg.precision, PRECISIONS, "TrainConfig")
    check_choice("device", cfg.device, DEVICES, "TrainConfig")
    get_modality(backbone.modality)  # an unknown modality fails here, naming the known ones
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise HeadstartError(
            f"TrainConfig needs epochs >= 1 and batch_size >= 1; got epochs={cfg.epochs}, "
            f"batch_size={cfg.batch_size}."
        )
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise HeadstartError(
            "TrainConfig device 'cuda' was asked for but no GPU is available. "
            "Use device='auto' or 'cpu'."
        )
    if not train_data.items:
        raise HeadstartError("No training items: the training data is empty.")
    for name, data in (("train", train_data), ("val", val)):
        if data is not None and len(data.items) != len(data.targets):
            raise HeadstartError(
                f"{name} data has {len(data.items)} items but {len(data.targets)} targets; "
                "pass one target per item."
            )


def _score_start(module: _Module, val_loader, cfg: TrainConfig) -> tuple[dict, dict]:
    """The validation metrics and weights of the starting point (epoch 0).

    A head-first strategy starts from a fitted head: a model already. If no epoch of training
    beats it on the validation loss, training made it worse and the start is kept."""
    started = time.perf_counter()
    device = torch.device(_accelerator(cfg.device))
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    module.to(device).eval()
    module.on_validation_epoch_start()
    with torch.no_grad():
        for batch in val_loader:
            batch = module.on_before_batch_transfer(batch, 0)
            if batch is not None:
                module.validation_step(move_data_to_device(batch, device), 0)
    module.cpu()
    entry = {
        "epoch": 0,  # nothing trained yet: no train_loss
        **module.summarise_validation(),
        "lr_head": 0.0,
        "trainable_groups": 0,
        "seconds": time.perf_counter() - started,
    }
    return entry, state


def _keep_start_if_best(module: _Module, start: dict, state: dict, history: list[dict]):
    trained = [e["val_loss"] for e in history if math.isfinite(e.get("val_loss", math.nan))]
    if "val_loss" in start and (not trained or start["val_loss"] <= min(trained)):
        module.load_state_dict(state)
    return [start, *history]


def _budget_and_lines(cfg: TrainConfig) -> list[Callback]:
    """A stop at the deadline, and progress lines where no terminal shows the bar."""
    from ..progress import line_progress

    extra: list[Callback] = []
    if cfg.deadline is not None:
        extra.append(StopAt(cfg.deadline))
    beat = line_progress("training", "steps", cfg.progress)
    if beat is not None:
        extra.append(Lines(beat))
    return extra


class StopAt(Callback):
    """Stop after the batch during which the deadline passed; the best epoch so far is what
    the engine then restores (or the start, for head-first strategies)."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.stopped = False

    def on_train_batch_end(self, trainer, *args) -> None:
        if time.monotonic() >= self.deadline:
            trainer.should_stop = True
            self.stopped = True


class Lines(Callback):
    """Optimiser steps to a Heartbeat: a progress line at a steady interval."""

    def __init__(self, beat):
        self.beat = beat

    def on_train_batch_end(self, trainer, *args) -> None:
        self.beat(int(trainer.global_step), int(trainer.estimated_stepping_batches))


def _accelerator(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _loaders(backbone: Backbone, train_data: TrainData, val: TrainData | None, cfg):
    modality = get_modality(backbone.modality)

    def loader(data: TrainData, training: bool) -> DataLoader:
        augment = cfg.augment and training
        targets = np.asarray(data.targets)
        min_rows = modality.min_train_rows if training else 1
        return DataLoader(
            modality.train_dataset(data.items, targets, backbone.preprocess, augment),
            batch_size=cfg.batch_size,
            shuffle=training,
            num_workers=cfg.workers,
            collate_fn=Collate(modality, min_rows),
            persistent_workers=cfg.workers > 0,
            # a lone last example cannot train BatchNorm: drop it rather than fail
            drop_last=training
            and len(data.items) % cfg.batch_size == 1
            and len(data.items) > cfg.batch_size,
        )

    return loader(train_data, True), (loader(val, False) if val is not None else None)


def _fit(trainer: pl.Trainer, module: _Module, loaders, resume_from: Path | None) -> None:
    """trainer.fit, turning Lightning's exit on Ctrl+C back into KeyboardInterrupt."""
    main = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if main else None
    train_loader, val_loader = loaders
    try:
        trainer.fit(
            module,
            train_dataloaders=train_loader,
            val_dataloaders=val_loader,
            ckpt_path=str(resume_from) if resume_from else None,
            weights_only=True,  # our own checkpoint: tensors and plain values only
        )
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        if main and handler is not None:
            signal.signal(signal.SIGINT, handler)  # Lightning ignores Ctrl+C after one


def _remove_old_checkpoints(workdir: Path) -> None:
    """A fresh run must not resume, or compete with, the checkpoints of an earlier one."""
    for path in [workdir / LAST, *workdir.glob(f"{BEST_PREFIX}*.ckpt")]:
        path.unlink(missing_ok=True)


def _quiet_warnings() -> None:
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    # few batches, few workers, frozen BatchNorm in eval mode: all intended here
    warnings.filterwarnings("ignore", category=PossibleUserWarning)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.* is deprecated.*")  # Lightning's own
