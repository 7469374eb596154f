"""Evaluation metrics of every task, as plain JSON-serialisable dicts.

`outputs` are what `Task.probabilities` gives: class probabilities (N x C) for classification,
per-label sigmoid probabilities (N x L) for multilabel, predicted values (N,) for regression.
The numbers come from the task's torchmetrics collection (`Task.metrics`), the one the engine's
validation uses too. Classes or labels absent from the evaluation data never crash: they get
support 0 and scores 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import HeadstartError

if TYPE_CHECKING:
    from ..tasks import Task

THRESHOLD_GRID = np.round(np.arange(1, 20) * 0.05, 2)  # 0.05, 0.10, ..., 0.95


def compute_metrics(
    task: Task,
    targets: np.ndarray,
    outputs: np.ndarray,
    thresholds: np.ndarray | None = None,
) -> dict:
    """Metrics for `task` comparing `targets` (from `Task.targets`) with model `outputs`.

    classification: accuracy, macro_f1, log_loss, per_class, confusion_matrix, classes.
    multilabel: micro_f1, macro_f1, mAP, subset_accuracy, per_label (at `thresholds`, 0.5 default).
    regression: mse, mae, rmse, r2.
    Every result also has `task` (the kind) and `n` (the number of examples).
    """
    import torch

    targets = np.asarray(targets)
    outputs = np.asarray(outputs, dtype=np.float64)
    if len(targets) == 0:
        raise HeadstartError(
            "There are no examples to evaluate. Give a validation set with at least one example."
        )
    if len(outputs) != len(targets):
        raise HeadstartError(
            f"Got {len(outputs)} model outputs for {len(targets)} targets; they must match."
        )
    targets, outputs = task.check_outputs(targets, outputs)
    collection = task.metrics(thresholds)
    collection.set_dtype(torch.float64)  # the report's numbers in double precision, as sklearn
    collection.update(torch.from_numpy(outputs), torch.from_numpy(np.ascontiguousarray(targets)))
    values = collection.compute()
    return {"task": task.name, "n": int(len(targets)), **task.summarise(values, thresholds)}


def best_thresholds(targets: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per-label threshold in 0.05..0.95 (step 0.05) that maximises F1 on this data.

    A label without positives gets 0.5. Ties go to the candidate closest to 0.5.
    """
    truth = np.asarray(targets) > 0.5
    probs = np.asarray(probs, dtype=np.float64)
    if truth.ndim != 2 or probs.shape != truth.shape:
        raise HeadstartError(
            f"best_thresholds needs targets and probabilities of the same shape (N x L); "
            f"got {truth.shape} and {probs.shape}."
        )
    grid = THRESHOLD_GRID[:, None, None]  # T x 1 x 1
    predicted = probs[None, :, :] >= grid  # T x N x L
    tp = (predicted & truth[None]).sum(axis=1)  # T x L
    fp = (predicted & ~truth[None]).sum(axis=1)
    fn = (~predicted & truth[None]).sum(axis=1)
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros(tp.shape), where=denominator > 0)
    # Best F1, then the candidate nearest 0.5 among equals.
    best = f1 >= f1.max(axis=0, keepdims=True) - 1e-12
    distance = np.where(best, np.abs(THRESHOLD_GRID - 0.5)[:, None], np.inf)
    chosen = THRESHOLD_GRID[np.argmin(distance, axis=0)]
    has_positive = truth.any(axis=0)
    return np.where(has_positive, chosen, 0.5).astype(np.float64)
