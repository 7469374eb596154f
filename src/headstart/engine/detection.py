"""Training and inference for detectors, on Lightning.

Images are letterboxed: scaled so the longer side is the model's side, padded right and bottom
with grey, so boxes map back to the original pixels by one division. Training augments with
torchvision.transforms.v2 (photometric distortion, zoom-out, IoU crop, horizontal flip), which
moves the boxes with the pixels, and picks a new side for each batch (multi-scale training).
Validation scores mAP@0.5 after each epoch; the best epoch's weights are kept.
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass, field

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data.images import load_rgb
from ..data.sources import Item
from ..errors import HeadstartError, UnreadableItem
from ..tasks.detection import Detection
from .train import StopAt, _accelerator, _quiet_warnings, warmup_cosine

PAD = 114  # YOLOX's letterbox grey


@dataclass
class DetectionConfig:
    size: int = 416
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 5e-4
    seed: int = 0
    augment: bool = True
    multiscale: tuple[int, ...] = ()  # sides to draw from per batch; () = size +- 96 by 32
    budget_seconds: float | None = None  # training stops here, keeping the best epoch
    device: str = "auto"
    patience: int = 0  # epochs without a better val mAP@0.5 before stopping; 0: never
    verbose: bool = True
    log: list = field(default_factory=list)

    def sides(self) -> tuple[int, ...]:
        if self.multiscale:
            return self.multiscale
        low, high = max(self.size - 96, 160), self.size + 96
        return tuple(range(low, high + 1, 32))


# ---- data --------------------------------------------------------------------------------


class _Images(Dataset):
    """Decoded images (uint8 CHW) with their boxes and label indices; transforms from v2."""

    def __init__(self, items: list[Item], task: Detection, augment: bool):
        self.items, self.task, self.transform = items, task, _augmentation() if augment else None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        from torchvision import tv_tensors

        item = self.items[index]
        image = _decode(item)
        target = self.task.target_tensors(item.target)
        if self.transform is None:
            return image, target
        h, w = image.shape[-2:]
        sample = {
            "image": tv_tensors.Image(image),
            "boxes": tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=(h, w)),
            "labels": target["labels"],
        }
        out = self.transform(sample)
        return out["image"].as_subclass(torch.Tensor), {
            "boxes": out["boxes"].as_subclass(torch.Tensor).float(),
            "labels": out["labels"],
        }


def _augmentation():
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomPhotometricDistort(p=0.5),
            v2.RandomApply([v2.RandomZoomOut(fill=PAD, side_range=(1.0, 2.0))], p=0.2),
            v2.RandomApply([v2.RandomIoUCrop(sampler_options=[0.3, 0.5, 0.7, 0.9, 1.0])], p=0.3),
            v2.RandomHorizontalFlip(),
            v2.SanitizeBoundingBoxes(min_size=2),
        ]
    )


def decode_image(path) -> torch.Tensor:
    """uint8 (3, H, W), upright RGB; UnreadableItem when the file cannot be decoded."""
    image = load_rgb(path)
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)


def _decode(item: Item) -> torch.Tensor:
    try:
        return decode_image(item.path)
    except UnreadableItem as err:  # read_detection checked headers; the pixels can still fail
        raise HeadstartError(
            f"Image '{item.path}' cannot be decoded ({err}); remove it or replace it."
        ) from err


def letterbox(image: torch.Tensor, side: int, boxes: torch.Tensor | None = None):
    """(float image (3, side, side) in [0, 1], scale, boxes scaled): the longer side to `side`."""
    from torchvision.transforms.v2 import functional as F

    h, w = image.shape[-2:]
    scale = side / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    resized = F.resize(image, [new_h, new_w], antialias=True)
    canvas = torch.full((3, side, side), PAD, dtype=torch.uint8)
    canvas[:, :new_h, :new_w] = resized
    out = canvas.float().div_(255)
    return out, scale, (boxes * scale if boxes is not None else None)


class _Batches:
    """Collate: letterbox every image of the batch to one side, drawn per batch when training."""

    def __init__(self, sides: tuple[int, ...], training: bool, seed: int):
        self.sides, self.training, self.random = sides, training, random.Random(seed)

    def __call__(self, rows):
        side = self.random.choice(self.sides) if self.training else self.sides[-1]
        images, targets = [], []
        for image, target in rows:
            boxed, _, boxes = letterbox(image, side, target["boxes"])
            images.append(boxed)
            targets.append({"boxes": boxes, "labels": target["labels"]})
        return torch.stack(images), targets


# ---- the Lightning module ----------------------------------------------------------------


class _DetectionModule(pl.LightningModule):
    def __init__(self, detector, strategy, task: Detection, val_items, cfg: DetectionConfig):
        super().__init__()
        self.detector, self.strategy, self.task, self.cfg = detector, strategy, task, cfg
        self.val_items = val_items
        self.groups = detector.param_groups()
        self.started = 0.0
        self.total_steps = 1
        self.best: tuple[float, dict | None, int] = (-1.0, None, -1)
        self.history: list[dict] = []
        self.rates = self.apply_strategy()

    def progress(self) -> float:
        by_steps = self.global_step / max(self.total_steps, 1)
        if self.cfg.budget_seconds and self.started:
            return min(
                1.0, max(by_steps, (time.perf_counter() - self.started) / self.cfg.budget_seconds)
            )
        return min(1.0, by_steps)

    def apply_strategy(self) -> list[float]:
        rates = self.strategy.rates(len(self.groups), self.detector.head_groups, self.progress())
        for (_, params), rate in zip(self.groups, rates, strict=True):
            for param in params:
                param.requires_grad_(rate > 0)
        if self.strategy.pretrained:  # keep ImageNet BatchNorm statistics: batches are small
            for module in self.detector.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return rates

    def on_train_epoch_start(self) -> None:
        if not self.started:
            self.started = time.perf_counter()
        self.rates = self.apply_strategy()

    def training_step(self, batch, batch_idx: int):
        images, targets = batch
        losses = self.detector(images, targets)
        if not torch.isfinite(losses["loss"]):
            raise HeadstartError(
                "The detection loss became infinite or NaN: lower --lr (e.g. by 10x) and run again."
            )
        self.log("loss", losses["loss"].detach(), prog_bar=True, batch_size=len(images))
        return losses["loss"]

    def on_train_epoch_end(self) -> None:
        loss = self.trainer.callback_metrics.get("loss")
        if not self.val_items:  # trained on everything: the last (annealed) epoch is kept
            metrics = {"map50": float("nan"), "map": float("nan")}
        else:
            self.detector.eval()
            predicted = predict_items(self.detector, self.val_items, self.cfg.size)
            self.detector.train()
            metrics = self.task.score_predictions(predicted, [i.target for i in self.val_items])
        row = {
            "epoch": self.current_epoch + 1,
            "seconds": round(time.perf_counter() - self.started, 1),
            "train_loss": float(loss) if loss is not None else float("nan"),
            "val_map50": metrics["map50"],
            "val_map": metrics["map"],
        }
        self.history.append(row)
        if self.cfg.verbose:
            print(
                f"epoch {row['epoch']}: loss {row['train_loss']:.3f}, val mAP@0.5 "
                f"{row['val_map50']:.3f}, mAP {row['val_map']:.3f} ({row['seconds']:.0f} s)",
                file=sys.stderr,
            )
        score = metrics["map50"] if not math.isnan(metrics["map50"]) else -1.0
        if score >= self.best[0]:  # ties: the later epoch, further down the schedule
            state = {k: v.detach().clone() for k, v in self.detector.state_dict().items()}
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


def train_detector(detector, strategy, task: Detection, train_items, val_items, cfg) -> dict:
    """Train in place; restores the best epoch's weights. Returns fit facts and the history."""
    _quiet_warnings()
    torch.set_flush_denormal(True)  # random-init YOLOX drifts into denormals: 5-40x slower on CPU
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.manual_seed(cfg.seed)
    data = _Images(train_items, task, cfg.augment)
    loader = DataLoader(
        data,
        batch_size=min(cfg.batch_size, len(data)),
        shuffle=True,
        drop_last=len(data) > cfg.batch_size,
        collate_fn=_Batches(cfg.sides() if cfg.augment else (cfg.size,), True, cfg.seed),
        num_workers=0,
    )
    module = _DetectionModule(detector, strategy, task, val_items, cfg)
    module.total_steps = max(1, len(loader) * cfg.epochs)
    callbacks = []
    if cfg.budget_seconds:
        callbacks.append(StopAt(time.monotonic() + cfg.budget_seconds))
    trainer = pl.Trainer(
        max_epochs=cfg.epochs,
        accelerator=_accelerator(cfg.device),
        devices=1,
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
        detector.load_state_dict(state)
    detector.eval()
    return {
        "train_seconds": round(seconds, 1),
        "epochs_run": len(module.history),
        "best_epoch": epoch,
        "best_val_map50": score,
        "history": module.history,
    }


# ---- inference -----------------------------------------------------------------------------


@torch.no_grad()
def detect_images(detector, images: list[torch.Tensor], side: int, score_threshold: float):
    """Detections for decoded uint8 images, in each image's own pixels (boxes clipped)."""
    detector.eval()
    device = next(detector.parameters()).device
    out = []
    for start in range(0, len(images), 8):
        chunk = images[start : start + 8]
        boxed = [letterbox(image, side) for image in chunk]
        batch = torch.stack([b[0] for b in boxed]).to(device)
        for image, (_, scale, _), found in zip(
            chunk, boxed, detector.detect(batch, score_threshold), strict=True
        ):
            h, w = image.shape[-2:]
            boxes = (found["boxes"].float().cpu() / scale).clamp_(min=0)
            boxes[:, 0::2] = boxes[:, 0::2].clamp(max=w)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(max=h)
            out.append(
                {"boxes": boxes, "scores": found["scores"].cpu(), "labels": found["labels"].cpu()}
            )
    return out


def predict_items(detector, items: list[Item], side: int, score_threshold: float = 0.01):
    """detect_images over items, decoding 32 at a time to bound memory."""
    out = []
    for start in range(0, len(items), 32):
        images = [_decode(item) for item in items[start : start + 32]]
        out += detect_images(detector, images, side, score_threshold)
    return out
