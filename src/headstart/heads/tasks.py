"""Tasks: how labels become targets, which loss trains a head, how outputs become predictions."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import HeadstartError, check_choice

TASKS = ("auto", "classification", "multilabel", "regression")
MULTILABEL_SEP = "|"


def detect_task(labels: list[str]) -> str:
    """multilabel when labels are joined by '|', regression when they are non-integer numbers
    (or integers with many distinct values), otherwise classification."""
    if any(MULTILABEL_SEP in label for label in labels):
        return "multilabel"
    numbers = [_number(label) for label in labels]
    if all(n is not None for n in numbers):
        integral = all(float(n).is_integer() for n in numbers)
        if not integral or len(set(numbers)) > 20:
            return "regression"
    return "classification"


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


@dataclass
class Task:
    kind: str
    classes: list[str]  # class or label names; empty for regression

    @classmethod
    def from_labels(cls, labels: list[str], kind: str = "auto") -> Task:
        check_choice("task", kind, TASKS)
        kind = detect_task(labels) if kind == "auto" else kind
        if kind == "regression":
            bad = [x for x in labels if _number(x) is None]
            if bad:
                raise HeadstartError(
                    f"Task 'regression' needs numeric labels; got {bad[0]!r}. "
                    "Use --task classification, or fix the label column."
                )
            return cls(kind, [])
        if kind == "multilabel":
            names = sorted(
                {p.strip() for x in labels for p in x.split(MULTILABEL_SEP) if p.strip()}
            )
        else:
            names = sorted(set(labels), key=_natural)
        task = cls(kind, names)
        task.check_trainable(labels)
        return task

    @property
    def out_dim(self) -> int:
        return 1 if self.kind == "regression" else len(self.classes)

    def check_trainable(self, labels: list[str]) -> None:
        if self.kind != "regression" and len(self.classes) < 2:
            only = self.classes[0] if self.classes else "none"
            raise HeadstartError(
                f"Training needs at least two classes; the data has one ({only!r}). "
                "Add examples of another class (another subfolder or label value)."
            )

    def targets(self, labels: list[str]) -> np.ndarray:
        """int class indices, a 0/1 matrix (multilabel), or float values (regression)."""
        if self.kind == "regression":
            return np.array([float(x) for x in labels], dtype=np.float32)
        if self.kind == "multilabel":
            index = {c: i for i, c in enumerate(self.classes)}
            out = np.zeros((len(labels), len(self.classes)), dtype=np.float32)
            for row, label in enumerate(labels):
                for part in label.split(MULTILABEL_SEP):
                    if part.strip() in index:
                        out[row, index[part.strip()]] = 1.0
            return out
        index = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted({x for x in labels if x not in index})
        if unknown:
            raise HeadstartError(
                f"Labels {unknown[:5]} were not seen in training (known: {self.classes}). "
                "Evaluate on data with the training classes, or retrain with these classes."
            )
        return np.array([index[x] for x in labels], dtype=np.int64)

    def loss(self, label_smoothing: float = 0.0) -> nn.Module:
        if self.kind == "regression":
            return _RegressionLoss()
        if self.kind == "multilabel":
            return nn.BCEWithLogitsLoss()
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        if self.kind == "classification":
            return logits.softmax(dim=-1)
        if self.kind == "multilabel":
            return logits.sigmoid()
        return logits.squeeze(-1)


class _RegressionLoss(nn.Module):
    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(output.squeeze(-1), target)


def _natural(text: str):
    number = _number(text)
    return (0, number, "") if number is not None else (1, 0.0, text)
