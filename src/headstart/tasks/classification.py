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
    one_class_per_item = True
    headline_metrics = (
        ("accuracy", "Accuracy"),
        ("macro_f1", "Macro F1"),
        ("log_loss", "Log loss"),
        ("n", "Examples"),
    )
    worst_by = "lowest probability on the true class"

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

    def score(self, truth, predicted, sample_weight=None) -> float:
        """Accuracy, labels compared as fit reads them (text)."""
        from sklearn.metrics import accuracy_score

        truth = [str(v).strip() for v in truth]
        shown = [str(p) for p in predicted]
        return float(accuracy_score(truth, shown, sample_weight=sample_weight))

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

    def describe_prediction(self, output: np.ndarray, top_k: int | None = None) -> dict:
        fields = {"probability": round(float(output.max()), 4)}
        if top_k:
            best = output.argsort()[::-1][:top_k]
            fields["top"] = [
                {"label": self.classes[i], "probability": round(float(output[i]), 4)} for i in best
            ]
        return fields

    def worst_examples(self, ids, targets, outputs, k, thresholds=None) -> list[dict]:
        """Lowest probability on the true class: id, true, predicted, confidence (of the
        prediction), true_probability."""
        truth = targets.astype(np.int64)
        true_prob = outputs[np.arange(len(truth)), truth]
        predicted = outputs.argmax(axis=1)
        order = np.argsort(true_prob, kind="stable")[:k]
        return [
            {
                "id": str(ids[i]),
                "true": self.classes[truth[i]],
                "predicted": self.classes[predicted[i]],
                "confidence": float(outputs[i, predicted[i]]),
                "true_probability": float(true_prob[i]),
            }
            for i in order
        ]

    def detail_tables(self, metrics: dict, max_classes: int) -> list[tuple]:
        if not metrics.get("per_class"):
            return []
        rows = [
            [name, m["precision"], m["recall"], m["f1"], m["support"]]
            for name, m in metrics["per_class"].items()
        ]
        header = ["class", "precision", "recall", "F1", "support"]
        tables = [("## Per-class results", "", header, rows)]
        matrix = metrics.get("confusion_matrix")
        classes = metrics.get("classes") or list(metrics["per_class"])
        if matrix and len(classes) <= max_classes:
            rows = [[name, *counts] for name, counts in zip(classes, matrix, strict=True)]
            note = "Rows are true classes, columns predicted."
            tables.append(("### Confusion matrix", note, ["true \\ predicted", *classes], rows))
        return tables
