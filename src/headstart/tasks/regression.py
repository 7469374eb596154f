"""Regression: one number per example, one output, mean squared error."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import HeadstartError
from .base import Task, number, register_task, scalar
from .metrics import R2


@register_task
class Regression(Task):
    name = "regression"
    target_type = float
    history = {"mae": "val_mae"}
    headline_metrics = (
        ("mse", "MSE"),
        ("rmse", "RMSE"),
        ("mae", "MAE"),
        ("r2", "R²"),
        ("n", "Examples"),
    )

    @classmethod
    def _from_labels(cls, labels: list[str]) -> Regression:
        task = cls()
        for label in labels:  # a text label fails now, with the fix
            task.parse(label)
        return task

    def parse(self, label: str) -> float:
        value = number(label)
        if value is None:
            raise HeadstartError(
                f"Task 'regression' needs numeric labels; got {label!r}. "
                "Use --task classification, or fix the label column."
            )
        return value

    def _array(self, targets: list) -> np.ndarray:
        return np.array(targets, dtype=np.float32)

    @property
    def out_dim(self) -> int:
        return 1

    def loss(self, label_smoothing: float = 0.0) -> nn.Module:
        return _RegressionLoss()

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.squeeze(-1)

    def score(self, truth, predicted, sample_weight=None) -> float:
        """R^2, as scikit-learn's regressors score."""
        from sklearn.metrics import r2_score

        truth = [float(v) for v in truth]
        return float(r2_score(truth, predicted, sample_weight=sample_weight))

    def decode(self, outputs: np.ndarray, thresholds: np.ndarray | None = None) -> list[float]:
        return [float(v) for v in np.atleast_1d(outputs)]

    def metrics(self, thresholds: np.ndarray | None = None):
        from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection

        return MetricCollection(
            {
                "mse": MeanSquaredError(),
                "mae": MeanAbsoluteError(),
                "rmse": MeanSquaredError(squared=False),
                "r2": R2(),
            },
            compute_groups=False,
        )

    def worst_examples(self, ids, targets, outputs, k, thresholds=None) -> list[dict]:
        """Largest absolute error: id, true, predicted, error."""
        values = outputs.reshape(len(ids), -1)[:, 0]
        truth = targets.astype(np.float64).reshape(-1)
        error = np.abs(truth - values)
        order = np.argsort(-error, kind="stable")[:k]
        return [
            {
                "id": str(ids[i]),
                "true": float(truth[i]),
                "predicted": float(values[i]),
                "error": float(error[i]),
            }
            for i in order
        ]

    def check_outputs(self, targets: np.ndarray, outputs: np.ndarray) -> tuple:
        y_true = targets.astype(np.float64).reshape(-1)
        if outputs.ndim == 2 and outputs.shape[1] == 1:
            outputs = outputs[:, 0]
        if outputs.shape != y_true.shape:
            raise HeadstartError(
                f"Regression outputs must be one value per example ({y_true.shape[0]}); "
                f"got shape {outputs.shape}."
            )
        return y_true, outputs

    def summarise(self, values: dict, thresholds: np.ndarray | None = None) -> dict:
        r2 = scalar(values["r2"])
        return {
            "mse": scalar(values["mse"]),
            "mae": scalar(values["mae"]),
            "rmse": scalar(values["rmse"]),
            "r2": None if np.isnan(r2) else r2,  # R^2 needs two examples
        }


class _RegressionLoss(nn.Module):
    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(output.squeeze(-1), target)
