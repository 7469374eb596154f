"""Multi-label classification: a set of label names per example ('a|b' on disk), one sigmoid
per label, a threshold per label (0.5, or tuned on validation data)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import HeadstartError
from .base import MULTILABEL_SEP, Task, floats, needs_two_classes, register_task, scalar
from .metrics import (
    ActiveMacroF1,
    LabelAveragePrecision,
    MeanAveragePrecision,
    exact_match,
    in_double,
)


@register_task
class MultiLabel(Task):
    name = "multilabel"
    target_type = frozenset  # the set of label names
    history = {"micro_f1": "val_f1"}
    headline_metrics = (
        ("micro_f1", "Micro F1"),
        ("macro_f1", "Macro F1"),
        ("mAP", "mAP"),
        ("subset_accuracy", "Subset accuracy"),
        ("n", "Examples"),
    )

    @classmethod
    def _from_labels(cls, labels: list[str]) -> MultiLabel:
        task = cls(sorted(set().union(*(_label_set(x) for x in labels))))
        needs_two_classes(task.classes)
        return task

    def parse(self, label: str) -> frozenset[str]:
        return _label_set(label)

    def _array(self, targets: list) -> np.ndarray:
        """A 0/1 matrix, one column per label; labels unseen in training are left out."""
        index = {c: i for i, c in enumerate(self.classes)}
        out = np.zeros((len(targets), len(self.classes)), dtype=np.float32)
        for row, names in enumerate(targets):
            for name in names:
                if name in index:
                    out[row, index[name]] = 1.0
        return out

    def loss(self, label_smoothing: float = 0.0) -> nn.Module:
        return nn.BCEWithLogitsLoss()

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.sigmoid()

    def score(self, truth, predicted, sample_weight=None) -> float:
        """Subset accuracy: the share of items whose predicted label set is exactly the true
        one (scikit-learn's accuracy_score on indicator matrices)."""
        truth = [_label_set(str(v)) for v in truth]
        same = [_label_set(p) == t for p, t in zip(predicted, truth, strict=True)]
        return float(np.average(same, weights=sample_weight))

    def decode(self, outputs: np.ndarray, thresholds: np.ndarray | None = None) -> list[str]:
        """The label set of each row, '|'-joined (the form labels have on disk)."""
        on = np.asarray(outputs) >= (0.5 if thresholds is None else thresholds)
        return [
            MULTILABEL_SEP.join(c for c, flag in zip(self.classes, row, strict=True) if flag)
            for row in on
        ]

    def describe_prediction(self, output: np.ndarray, top_k: int | None = None) -> dict:
        probabilities = zip(self.classes, output, strict=True)
        return {"probabilities": {c: round(float(p), 4) for c, p in probabilities}}

    def worst_examples(self, ids, targets, outputs, k, thresholds=None) -> list[dict]:
        """Largest total absolute error between targets and probabilities: id, true, predicted
        (labels at `thresholds`, 0.5 default), error."""
        limits = np.full(outputs.shape[1], 0.5) if thresholds is None else np.asarray(thresholds)
        error = np.abs(targets.astype(np.float64) - outputs).sum(axis=1)
        order = np.argsort(-error, kind="stable")[:k]
        return [
            {
                "id": str(ids[i]),
                "true": self._joined(targets[i] > 0.5),
                "predicted": self._joined(outputs[i] >= limits),
                "error": float(error[i]),
            }
            for i in order
        ]

    def _joined(self, mask: np.ndarray) -> str:
        return MULTILABEL_SEP.join(c for c, on in zip(self.classes, mask, strict=True) if on)

    def detail_tables(self, metrics: dict, max_classes: int) -> list[tuple]:
        if not metrics.get("per_label"):
            return []
        rows = [
            [name, m["precision"], m["recall"], m["f1"], m["ap"], m["threshold"], m["support"]]
            for name, m in metrics["per_label"].items()
        ]
        header = ["label", "precision", "recall", "F1", "AP", "threshold", "support"]
        return [("## Per-label results", "", header, rows)]

    def thresholds(self, thresholds: np.ndarray | None) -> np.ndarray:
        n_labels = len(self.classes)
        if thresholds is None:
            return np.full(n_labels, 0.5)
        thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
        if thresholds.shape != (n_labels,):
            raise HeadstartError(
                f"Give one threshold per label ({n_labels}); got {thresholds.shape[0]}."
            )
        return thresholds

    def tune_thresholds(self, targets: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        """Per label, the threshold with the best F1 on this (validation) data."""
        from ..report.metrics import best_thresholds

        return best_thresholds(targets, outputs)

    def metrics(self, thresholds: np.ndarray | None = None):
        from torchmetrics import MetricCollection
        from torchmetrics.classification import (
            MultilabelF1Score,
            MultilabelPrecision,
            MultilabelRecall,
            MultilabelStatScores,
        )
        from torchmetrics.wrappers import LambdaInputTransformer

        n = len(self.classes)
        limits = torch.from_numpy(self.thresholds(thresholds))

        def predicted(probs: torch.Tensor) -> torch.Tensor:  # 0/1 at each label's threshold
            return (probs >= limits.to(probs.device, probs.dtype)).long()

        def truth(targets: torch.Tensor) -> torch.Tensor:
            return (targets > 0.5).long()

        def at_thresholds(metric):
            return LambdaInputTransformer(metric, predicted, truth)

        return MetricCollection(
            {
                "micro_f1": at_thresholds(in_double(MultilabelF1Score)(n, average="micro")),
                "macro_f1": at_thresholds(ActiveMacroF1(n)),
                "mAP": LambdaInputTransformer(MeanAveragePrecision(), transform_target=truth),
                "subset_accuracy": at_thresholds(exact_match()(n)),
                "precision": at_thresholds(in_double(MultilabelPrecision)(n, average=None)),
                "recall": at_thresholds(in_double(MultilabelRecall)(n, average=None)),
                "f1": at_thresholds(in_double(MultilabelF1Score)(n, average=None)),
                "ap": LambdaInputTransformer(LabelAveragePrecision(), transform_target=truth),
                "stats": at_thresholds(MultilabelStatScores(n, average=None)),
            },
            compute_groups=False,
        )

    def check_outputs(self, targets: np.ndarray, outputs: np.ndarray) -> tuple:
        n_labels = len(self.classes)
        if outputs.ndim != 2 or outputs.shape[1] != n_labels or targets.shape != outputs.shape:
            raise HeadstartError(
                f"Multilabel targets and outputs must both be N x {n_labels} (one column per "
                f"label); got {targets.shape} and {outputs.shape}."
            )
        return targets, outputs

    def summarise(self, values: dict, thresholds: np.ndarray | None = None) -> dict:
        limits = self.thresholds(thresholds)
        precision, recall, f1 = (floats(values[k]) for k in ("precision", "recall", "f1"))
        aps = [None if np.isnan(ap) else ap for ap in floats(values["ap"])]
        support = values["stats"][:, 4].tolist()  # tp, fp, tn, fn, support
        mean_ap = scalar(values["mAP"])
        return {
            "micro_f1": scalar(values["micro_f1"]),
            "macro_f1": scalar(values["macro_f1"]),
            "mAP": None if np.isnan(mean_ap) else mean_ap,
            "subset_accuracy": scalar(values["subset_accuracy"]),
            "per_label": {
                name: {
                    "precision": precision[j],
                    "recall": recall[j],
                    "f1": f1[j],
                    "ap": aps[j],
                    "threshold": float(limits[j]),
                    "support": int(support[j]),
                }
                for j, name in enumerate(self.classes)
            },
            "labels": list(self.classes),
        }


def _label_set(label: str) -> frozenset[str]:
    return frozenset(p.strip() for p in label.split(MULTILABEL_SEP) if p.strip())
