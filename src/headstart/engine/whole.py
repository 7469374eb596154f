"""The training loop shared by whole models (detectors, segmenters), on Lightning.

A whole model lists its parameter groups input to output (`param_groups()`, the pre-trained
backbone first, its last `head_groups` new). A strategy (strategies/whole.py) gives each group a
learning-rate share per point of training; 0 freezes it. Progress runs in steps, or in time when a
budget binds, so the rate is annealed when time runs out. After each epoch the task's module
scores the validation items; the best epoch's weights are kept (ties: the later epoch).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import lightning.pytorch as pl
import torch

from ..errors import HeadstartError
from .train import StopAt, _accelerator, _quiet_warnings, warmup_cosine


@dataclass
class WholeModelConfig:
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 5e-4
    seed: int = 0
    augment: bool = True
    budget_seconds: float | None = None  # training stops here, keeping the best epoch
    device: str = "auto"
    patience: int = 0  # epochs without a better validation score before stopping; 0: never
    precision: str = "fp32"  # of training: fp32, bf16 (mixed), or auto (bf16 where it is fast)
    verbose: bool = True
    log: list = field(default_factory=list)


class WholeModelModule(pl.LightningModule):
    """Subclasses give `loss(batch)` and `validate()` -> (score, {history key: value})."""

    def __init__(self, model, strategy, cfg: WholeModelConfig):
        super().__init__()
        self.model, self.strategy, self.cfg = model, strategy, cfg
        self.groups = model.param_groups()
        self.started = 0.0
        self.total_steps = 1
        self.best: tuple[float, dict | None, int] = (-1.0, None, -1)
        self.history: list[dict] = []
        self.rates = self.apply_strategy()

    def loss(self, batch) -> torch.Tensor:
        raise NotImplementedError

    def validate(self) -> tuple[float, dict]:
        """(the score the best epoch is chosen by, or NaN without validation; history values)."""
        raise NotImplementedError

    def progress(self) -> float:
        by_steps = self.global_step / max(self.total_steps, 1)
        if self.cfg.budget_seconds and self.started:
            return min(
                1.0, max(by_steps, (time.perf_counter() - self.started) / self.cfg.budget_seconds)
            )
        return min(1.0, by_steps)

    def apply_strategy(self) -> list[float]:
        rates = self.strategy.rates(len(self.groups), self.model.head_groups, self.progress())
        for (_, params), rate in zip(self.groups, rates, strict=True):
            for param in params:
                param.requires_grad_(rate > 0)
        if self.strategy.pretrained:  # keep the pre-trained BatchNorm statistics: batches are small
            for module in self.pretrained_modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return rates

    def pretrained_modules(self):
        """The modules whose BatchNorm statistics stay as pre-trained: the model's
        `pretrained_part` (a segmenter's encoder: its new decoder must learn its own), else all."""
        return getattr(self.model, "pretrained_part", self.model).modules()

    def on_train_epoch_start(self) -> None:
        if not self.started:
            self.started = time.perf_counter()
        self.rates = self.apply_strategy()

    def training_step(self, batch, batch_idx: int):
        loss = self.loss(batch)
        if not torch.isfinite(loss):
            raise HeadstartError(
                "The training loss became infinite or NaN: lower --lr (e.g. by 10x) and run again."
            )
        self.log("loss", loss.detach(), prog_bar=True, batch_size=self.cfg.batch_size)
        return loss

    def on_train_epoch_end(self) -> None:
        loss = self.trainer.callback_metrics.get("loss")
        self.model.eval()
        score, values = self.validate()
        self.model.train()
        self.apply_strategy()
        row = {
            "epoch": self.current_epoch + 1,
            "seconds": round(time.perf_counter() - self.started, 1),
            "train_loss": float(loss) if loss is not None else float("nan"),
            **values,
        }
        self.history.append(row)
        if self.cfg.verbose:
            shown = ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in values.items())
            print(
                f"epoch {row['epoch']}: loss {row['train_loss']:.3f}, {shown} "
                f"({row['seconds']:.0f} s)",
                file=sys.stderr,
            )
        score = score if not math.isnan(score) else -1.0  # no validation: the last epoch wins
        if score >= self.best[0]:  # ties: the later epoch, further down the schedule
            state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.best = (score, state, row["epoch"])
        if self.cfg.patience and row["epoch"] - self.best[2] >= self.cfg.patience:
            self.trainer.should_stop = True

    def configure_optimizers(self):
        params = [{"params": p, "name": name} for name, p in self.groups]
        optimizer = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        warm = warmup_cosine(self.total_steps, min(0.1, 100 / max(self.total_steps, 1)))

        def factor(index: int):
            # progress in time when a budget binds, so the rate is annealed when time runs out;
            # times the strategy's rate for the group (0: frozen this epoch)
            return lambda step: (
                warm(max(step, int(self.progress() * self.total_steps))) * (self.rates[index])
            )

        lambdas = [factor(i) for i in range(len(params))]
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def fit_whole_model(module: WholeModelModule, loader, cfg: WholeModelConfig) -> dict:
    """Train in place; restores the best epoch's weights. Returns fit facts and the history."""
    _quiet_warnings()
    module.total_steps = max(1, len(loader) * cfg.epochs)
    from ..features.speed import resolve_precision

    callbacks = [StopAt(time.monotonic() + cfg.budget_seconds)] if cfg.budget_seconds else []
    accelerator = _accelerator(cfg.device)
    precision = resolve_precision(cfg.precision, accelerator)
    trainer = pl.Trainer(
        max_epochs=cfg.epochs,
        accelerator=accelerator,
        devices=1,
        precision="bf16-mixed" if precision == "bf16" else "32-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=callbacks,
        deterministic=False,
    )
    started = time.perf_counter()
    trainer.fit(module, loader)
    seconds = time.perf_counter() - started
    score, state, epoch = module.best
    if state is not None:
        module.model.load_state_dict(state)
    module.model.eval()
    return {
        "train_seconds": round(seconds, 1),
        "epochs_run": len(module.history),
        "best_epoch": epoch,
        "best_score": score,
        "precision": precision,
        "history": module.history,
    }


def seed_everything(seed: int) -> None:
    torch.set_flush_denormal(True)  # random-init weights drift into denormals: 5-40x slower on CPU
    pl.seed_everything(seed, workers=True, verbose=False)
    torch.manual_seed(seed)
