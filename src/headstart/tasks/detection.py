"""Object detection: boxes with a class each per image, scored by COCO mAP (torchmetrics with
pycocotools underneath, not hand-written).

The detector carries its own loss and decoding (zoo/detectors.py): a detection head is trained
with the whole model, so the task only types the targets, turns them into tensors and scores
predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch

from ..data.boxes import Boxes
from ..errors import HeadstartError
from .base import Task, register_task

IOU_FOR_CURVE = 0.5  # the precision-recall plot is drawn at mAP@0.5's overlap


@register_task
class Detection(Task):
    name = "detection"
    needs = "pyramid"
    target_type = Boxes
    estimator: ClassVar[str] = "ObjectDetector"
    headline_metrics = (("map50", "mAP@0.5"), ("map", "mAP@[.5:.95]"), ("n", "Images"))

    @classmethod
    def recognises(cls, path) -> bool:
        """Whether DATA is laid out as a detection set (VOC, COCO or YOLO)."""
        from ..data.boxes import detection_layout

        return detection_layout(path) is not None

    @classmethod
    def ranking_crops(cls, path, folder, seed: int, max_items: int):
        """A classification set for `rank`: every box cropped, plus background crops."""
        from ..data.boxes import read_detection
        from ..select.crops import object_crops

        return object_crops(read_detection(path), folder, seed, max_items)

    @classmethod
    def from_source(cls, source) -> Detection:
        """The classes a detection set declares, else those its boxes name."""
        found = sorted({name for item in source.items for name in item.target.labels})
        classes = list(source.classes) or found
        if not any(len(item.target) for item in source.items):
            raise HeadstartError(
                f"'{source.origin}' has images but no boxes at all: a detector needs boxes to "
                "learn from. Check that the annotations name the images."
            )
        return cls(classes)

    def parse(self, label: str) -> Boxes:
        raise HeadstartError("Detection targets are boxes read from annotation files, not labels.")

    def target_tensors(self, boxes: Boxes, scale: float = 1.0) -> dict[str, torch.Tensor]:
        """{"boxes": (N, 4) float, "labels": (N,) int64} with classes as indices; boxes scaled."""
        index = {name: i for i, name in enumerate(self.classes)}
        unknown = sorted({name for name in boxes.labels if name not in index})
        if unknown:
            raise HeadstartError(
                f"Boxes of classes {unknown[:5]} were not seen in training (known: "
                f"{self.classes}). Evaluate on data with the training classes."
            )
        corners = torch.tensor(boxes.boxes, dtype=torch.float32).reshape(-1, 4) * scale
        labels = torch.tensor([index[n] for n in boxes.labels], dtype=torch.int64)
        return {"boxes": corners, "labels": labels}

    def metrics(self, thresholds: np.ndarray | None = None):
        from torchmetrics.detection import MeanAveragePrecision

        return MeanAveragePrecision(
            box_format="xyxy",
            iou_type="bbox",
            class_metrics=True,
            extended_summary=True,
            backend="pycocotools",
        )

    def score_predictions(self, predicted: Sequence[dict], truth: Sequence[Boxes]) -> dict:
        """metrics.json for predictions ({"boxes", "scores", "labels"} tensors, original pixels)
        against the true Boxes of the same images."""
        metric = self.metrics()
        metric.update(list(predicted), [self.target_tensors(b) for b in truth])
        return self.summarise(metric.compute(), n=len(truth), boxes=sum(map(len, truth)))

    def summarise(self, values: dict, thresholds=None, *, n: int = 0, boxes: int = 0) -> dict:
        def value(key: str) -> float:
            return float(values[key]) if key in values else float("nan")

        per_class = self._per_class(values)
        return {
            "map50": value("map_50"),
            "map": value("map"),
            "map75": value("map_75"),
            "mar100": value("mar_100"),
            "n": n,
            "boxes": boxes,
            "per_class": per_class,
            "pr_curve": self._pr_curve(values),
            "classes": list(self.classes),
        }

    def _per_class(self, values: dict) -> dict:
        """AP@[.5:.95] and AP@0.5 per class (NaN: the class has no true box here)."""
        found = [int(c) for c in values["classes"].reshape(-1)]
        per_map = values["map_per_class"].reshape(-1).tolist()
        precision = values.get("precision")  # (iou, recall, class, area, max dets)
        out = {}
        for column, class_index in enumerate(found):
            ap50 = float("nan")
            if precision is not None:
                curve = precision[0, :, column, 0, -1]
                ap50 = float(curve[curve > -1].mean()) if (curve > -1).any() else float("nan")
            out[self.classes[class_index]] = {"ap": float(per_map[column]), "ap50": ap50}
        return out

    def _pr_curve(self, values: dict) -> dict:
        """Precision at 101 recall points at IoU 0.5, per class, for the plot."""
        precision = values.get("precision")
        if precision is None:
            return {}
        found = [int(c) for c in values["classes"].reshape(-1)]
        return {
            self.classes[c]: [round(float(p), 4) for p in precision[0, :, col, 0, -1]]
            for col, c in enumerate(found)
        }

    def detail_tables(self, metrics: dict, max_classes: int) -> list[tuple]:
        rows = [
            (name, f"{v['ap50']:.3f}", f"{v['ap']:.3f}")
            for name, v in metrics.get("per_class", {}).items()
        ]
        return [("Per class", "", ("class", "AP@0.5", "AP@[.5:.95]"), rows)] if rows else []
