"""Evaluation metrics for the three task kinds, as plain JSON-serialisable dicts.

`outputs` are what `Task.probabilities` gives: class probabilities (N x C) for classification,
per-label sigmoid probabilities (N x L) for multilabel, predicted values (N,) for regression.
Classes or labels absent from the evaluation data never crash: they get support 0 and scores 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import HeadstartError

if TYPE_CHECKING:
    from ..heads.tasks import Task

EPS = 1e-15
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
    if task.kind == "classification":
        return _classification(task, targets, outputs)
    if task.kind == "multilabel":
        return _multilabel(task, targets, outputs, thresholds)
    if task.kind == "regression":
        return _regression(targets, outputs)
    raise HeadstartError(
        f"Cannot compute metrics for task {task.kind!r}; "
        "expected 'classification', 'multilabel' or 'regression'."
    )


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


def _classification(task: Task, targets: np.ndarray, probs: np.ndarray) -> dict:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    classes = list(task.classes)
    n_classes = len(classes)
    if probs.ndim != 2 or probs.shape[1] != n_classes:
        raise HeadstartError(
            f"Classification outputs must be N x {n_classes} probabilities "
            f"(one column per class); got shape {probs.shape}."
        )
    y_true = _class_indices(targets, n_classes)
    y_pred = probs.argmax(axis=1)
    labels = list(range(n_classes))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    # Macro-F1 over the classes that occur in the data or the predictions (sklearn's default),
    # so a class missing from a small validation split does not drag the average to zero.
    present = np.union1d(y_true, y_pred)
    p_true = np.clip(probs[np.arange(len(y_true)), y_true], EPS, 1.0)
    return {
        "task": "classification",
        "n": int(len(y_true)),
        "accuracy": float(np.mean(y_true == y_pred)),
        "macro_f1": float(np.mean(f1[present])),
        "log_loss": float(-np.mean(np.log(p_true))),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "classes": classes,
    }


def _class_indices(targets: np.ndarray, n_classes: int) -> np.ndarray:
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
    return indices


def _multilabel(
    task: Task, targets: np.ndarray, probs: np.ndarray, thresholds: np.ndarray | None
) -> dict:
    from sklearn.metrics import average_precision_score, precision_recall_fscore_support

    names = list(task.classes)
    n_labels = len(names)
    if probs.ndim != 2 or probs.shape[1] != n_labels or targets.shape != probs.shape:
        raise HeadstartError(
            f"Multilabel targets and outputs must both be N x {n_labels} (one column per "
            f"label); got {targets.shape} and {probs.shape}."
        )
    if thresholds is None:
        thresholds = np.full(n_labels, 0.5)
    thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if thresholds.shape != (n_labels,):
        raise HeadstartError(
            f"Give one threshold per label ({n_labels}); got {thresholds.shape[0]}."
        )
    truth = (targets > 0.5).astype(np.int64)
    predicted = (probs >= thresholds[None, :]).astype(np.int64)
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, average=None, labels=list(range(n_labels)), zero_division=0
    )
    _, _, micro_f1, _ = precision_recall_fscore_support(
        truth, predicted, average="micro", zero_division=0
    )
    # Macro-F1 over labels that occur in the data or the predictions (as for classification).
    active = truth.any(axis=0) | predicted.any(axis=0)
    aps: list[float | None] = [
        float(average_precision_score(truth[:, j], probs[:, j])) if truth[:, j].any() else None
        for j in range(n_labels)
    ]
    scored = [ap for ap in aps if ap is not None]
    return {
        "task": "multilabel",
        "n": int(len(truth)),
        "micro_f1": float(micro_f1),
        "macro_f1": float(np.mean(f1[active])) if active.any() else 0.0,
        "mAP": float(np.mean(scored)) if scored else None,
        "subset_accuracy": float(np.mean(np.all(truth == predicted, axis=1))),
        "per_label": {
            name: {
                "precision": float(precision[j]),
                "recall": float(recall[j]),
                "f1": float(f1[j]),
                "ap": aps[j],
                "threshold": float(thresholds[j]),
                "support": int(support[j]),
            }
            for j, name in enumerate(names)
        },
        "labels": names,
    }


def _regression(targets: np.ndarray, outputs: np.ndarray) -> dict:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y_true = targets.astype(np.float64).reshape(-1)
    if outputs.ndim == 2 and outputs.shape[1] == 1:
        outputs = outputs[:, 0]
    if outputs.shape != y_true.shape:
        raise HeadstartError(
            f"Regression outputs must be one value per example ({y_true.shape[0]}); "
            f"got shape {outputs.shape}."
        )
    mse = float(mean_squared_error(y_true, outputs))
    return {
        "task": "regression",
        "n": int(len(y_true)),
        "mse": mse,
        "mae": float(mean_absolute_error(y_true, outputs)),
        "rmse": float(np.sqrt(mse)),
        # R^2 needs two examples; constant targets give 1.0 (exact) or 0.0 (sklearn's rule).
        "r2": float(r2_score(y_true, outputs)) if len(y_true) >= 2 else None,
    }
