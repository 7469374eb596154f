"""Semantic segmentation: a class per pixel, scored by Dice, IoU and pixel accuracy (torchmetrics,
not hand-written), per class and as the mean over the foreground classes (every class but 0).

The segmenter carries its own decoder and loss (zoo/segmenters.py, engine/segmentation.py): the
task types the targets, names the classes and scores predicted masks against true ones.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from ..data.masks import Mask
from ..errors import HeadstartError
from .base import Task, register_task


@register_task
class Segmentation(Task):
    name = "segmentation"
    needs = "pyramid"
    target_type = Mask
    estimator: ClassVar[str] = "Segmenter"
    headline_metrics = (
        ("dice", "Dice (foreground mean)"),
        ("iou", "IoU (foreground mean)"),
        ("pixel_accuracy", "Pixel accuracy"),
        ("n", "Images"),
    )

    @classmethod
    def recognises(cls, path) -> bool:
        """Whether DATA is laid out as images with masks (folders, or volumes with labels)."""
        from ..data.masks import segmentation_layout

        return segmentation_layout(path) is not None

    @classmethod
    def ranking_crops(cls, path, folder, seed: int, max_items: int):
        """A classification set for `rank`: patches labelled by the class of their centre."""
        from ..data.masks import read_segmentation
        from ..select.crops import mask_crops

        return mask_crops(read_segmentation(path), folder, seed, max_items)

    @classmethod
    def from_source(cls, source) -> Segmentation:
        if len(source.classes) < 2:
            raise HeadstartError(
                f"'{source.origin}' names {len(source.classes)} class(es); segmentation needs at "
                "least two (background and one more). Check the masks' values or classes.txt."
            )
        return cls(source.classes)

    def parse(self, label: str) -> Mask:
        raise HeadstartError("Segmentation targets are mask files, not labels.")

    def metrics(self, thresholds: np.ndarray | None = None):
        from torchmetrics import MetricCollection
        from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex
        from torchmetrics.segmentation import DiceScore

        k = len(self.classes)
        return MetricCollection(
            {
                "dice": DiceScore(
                    k, average="none", aggregation_level="global", input_format="index"
                ),
                "iou": MulticlassJaccardIndex(k, average="none"),
                "pixel_accuracy": MulticlassAccuracy(k, average="micro"),
            }
        )

    def score_masks(self, predicted, truth) -> dict:
        """metrics.json for predicted class-index masks against true ones (pairs of (H, W))."""
        metric = self.metrics()
        pixels = np.zeros(len(self.classes), dtype=np.int64)
        for guess, true in zip(predicted, truth, strict=True):
            true = np.asarray(true, dtype=np.int64)
            pixels += np.bincount(true.reshape(-1), minlength=len(self.classes))[: len(pixels)]
            guess_t = torch.as_tensor(np.asarray(guess, dtype=np.int64))[None]
            metric.update(guess_t, torch.as_tensor(true)[None])
        return self.summarise(metric.compute(), n=len(truth), pixels=pixels)

    def summarise(self, values: dict, thresholds=None, *, n: int = 0, pixels=None) -> dict:
        dice = values["dice"].reshape(-1).tolist()
        iou = values["iou"].reshape(-1).tolist()
        share = pixels / max(int(pixels.sum()), 1) if pixels is not None else [float("nan")] * n
        present = [k for k in range(1, len(self.classes)) if pixels is None or pixels[k] > 0]
        accuracy = float(values["pixel_accuracy"])
        return {
            "dice": _mean([dice[k] for k in present]),
            "iou": _mean([iou[k] for k in present]),
            "pixel_accuracy": accuracy,
            "pixel_error": 1.0 - accuracy,
            "n": n,
            "per_class": {
                name: {"dice": dice[k], "iou": iou[k], "pixel_share": float(share[k])}
                for k, name in enumerate(self.classes)
            },
            "classes": list(self.classes),
        }

    def detail_tables(self, metrics: dict, max_classes: int) -> list[tuple]:
        rows = [
            (name, f"{v['dice']:.3f}", f"{v['iou']:.3f}", f"{v['pixel_share']:.1%}")
            for name, v in metrics.get("per_class", {}).items()
        ]
        header = ("class", "Dice", "IoU", "share of true pixels")
        return [("Per class", "", header, rows)] if rows else []


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")
