"""Training and inference for detectors, on Lightning.

Images are letterboxed: scaled so the longer side is the model's side, padded right and bottom
with grey, so boxes map back to the original pixels by one division. Training augments with
torchvision.transforms.v2 (photometric distortion, zoom-out, IoU crop, horizontal flip), which
moves the boxes with the pixels, and picks a new side for each batch (multi-scale training).
Validation scores mAP@0.5 after each epoch; the best epoch's weights are kept.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data.images import load_rgb
from ..data.sources import Item
from ..errors import HeadstartError, UnreadableItem
from ..tasks.detection import Detection
from .whole import WholeModelConfig, WholeModelModule, fit_whole_model, seed_everything

PAD = 114  # YOLOX's letterbox grey


@dataclass
class DetectionConfig(WholeModelConfig):
    size: int = 416
    multiscale: tuple[int, ...] = ()  # sides to draw from per batch; () = size +- 96 by 32

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


class _DetectionModule(WholeModelModule):
    def __init__(self, detector, strategy, task: Detection, val_items, cfg: DetectionConfig):
        super().__init__(detector, strategy, cfg)
        self.task, self.val_items = task, val_items

    def loss(self, batch) -> torch.Tensor:
        images, targets = batch
        return self.model(images, targets)["loss"]

    def validate(self) -> tuple[float, dict]:
        if not self.val_items:  # trained on everything: the last (annealed) epoch is kept
            return float("nan"), {"val_map50": float("nan"), "val_map": float("nan")}
        predicted = predict_items(self.model, self.val_items, self.cfg.size)
        metrics = self.task.score_predictions(predicted, [i.target for i in self.val_items])
        return metrics["map50"], {"val_map50": metrics["map50"], "val_map": metrics["map"]}


def train_detector(detector, strategy, task: Detection, train_items, val_items, cfg) -> dict:
    """Train in place; restores the best epoch's weights. Returns fit facts and the history."""
    seed_everything(cfg.seed)
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
    facts = fit_whole_model(module, loader, cfg)
    facts["best_val_map50"] = facts.pop("best_score")
    return facts


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
