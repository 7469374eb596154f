"""Single-label classification: one class name per example, softmax over the classes."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import HeadstartError
from .base import Task, floats, natural, needs_two_classes, register_task, scalar
from .metrics import LogLoss, in_double


@register_task
class Classification(Task):
    name = "classification"
    target_type = str  # the class name
    stratify = True
    history = {"accuracy": "val_accuracy"}

    @classmethod
    def _from_labels(cls, labels: list[str]) -> Classification:
        task = cls(sorted(set(labels), key=natural))
        needs_two_classes(task.classes)
        return task

    def parse(self, label: str) -> str:
        return label

    def _array(self, targets: list) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted({x for x in targets if x not in index})
        if unknown:
            raise HeadstartError(
                f"Labels {unknown[:5]} were not seen in training (known: {self.classes}). "
                "Evaluate on data with the training classes, or retrain with these classes."
            )
        return np.array([index[x] for x in targets], dtype=np.int64)

    def loss(self, label_smoothing: float = 0.0) -> nn.Module:
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.softmax(dim=-1)

    def decode(self, outputs: np.ndarray, thresholds: np.ndarray | None = None) -> list[str]:
        return [self.classes[i] for i in np.asarray(outputs).argmax(axis=1)]

    def metrics(self, thresholds: np.ndarray | None = None):
        from torchmetrics import MetricCollection
        from torchmetrics.classification import (
            MulticlassAccuracy,
            MulticlassConfusionMatrix,
            MulticlassF1Score,
            MulticlassPrecision,
            MulticlassRecall,
        )

        n = len(self.classes)
        return MetricCollection(
            {
                "accuracy": in_double(MulticlassAccuracy)(n, average="micro"),
                # macro over classes in the data or the predictions, as sklearn's default
                "macro_f1": in_double(MulticlassF1Score)(n, average="macro"),
                "log_loss": LogLoss(),
                "precision": in_double(MulticlassPrecision)(n, average=None),
                "recall": in_double(MulticlassRecall)(n, average=None),
                "f1": in_double(MulticlassF1Score)(n, average=None),
                "confusion_matrix": MulticlassConfusionMatrix(n),
            },
            compute_groups=False,
        )

    def check_outputs(self, targets: np.ndarray, outputs: np.ndarray) -> tuple:
        n_classes = len(self.classes)
        if outputs.ndim != 2 or outputs.shape[1] != n_classes:
            raise HeadstartError(
                f"Classification outputs must be N x {n_classes} probabilities "
                f"(one column per class); got shape {outputs.shape}."
            )
        if targets.ndim != 1:
            raise HeadstartError(
                f"Classification targets must be one class index per example; got shape "
                f"{targets.shape}."
            )
        indices = targets.astype(np.int64)
        if not np.array_equal(indices, targets) or indices.min() < 0 or indices.max() >= n_classes:
            raise HeadstartError(
                f"Classification targets must be class indices 0..{n_classes - 1}; "
                f"got values from {targets.min()} to {targets.max()}."
            )
        return indices, outputs

    def summarise(self, values: dict, thresholds: np.ndarray | None = None) -> dict:
        matrix = values["confusion_matrix"].long().tolist()
        precision, recall, f1 = (floats(values[k]) for k in ("precision", "recall", "f1"))
        return {
            "accuracy": scalar(values["accuracy"]),
            "macro_f1": scalar(values["macro_f1"]),
            "log_loss": scalar(values["log_loss"]),
            "per_class": {
                name: {
                    "precision": precision[i],
                    "recall": recall[i],
                    "f1": f1[i],
                    "support": int(sum(matrix[i])),
                }
                for i, name in enumerate(self.classes)
            },
            "confusion_matrix": matrix,
            "classes": list(self.classes),
        }
