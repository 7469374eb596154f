"""Does the trained model beat the probe `auto` started from? Decided on held-out data only.

With a validation split of at least plan.MIN_VAL items, both are scored on it. With less data,
one split is too noisy to tell them apart: both are cross-validated on the same folds of all
the labelled items (out-of-fold predictions, as scikit-learn's cross_val_predict), and the
model kept is then fitted on every item, its out-of-fold predictions standing as its
validation. Ties go to the probe: it is cheaper, and nothing says training helped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .budget import Deadline

FoldFit = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (train idx, test idx) -> outputs


@dataclass
class Check:
    trained: float | None  # held-out score of the trained strategy (None: not finished)
    probe: float
    n: int  # held-out items behind each score
    how: str  # "the 49 validation items", "3-fold cross-validation of 32 items"
    trained_outputs: np.ndarray | None = None  # out-of-fold outputs (cross-validation)
    probe_outputs: np.ndarray | None = None
    note: str = ""  # why the trained side did not finish, where it did not

    @property
    def keep_trained(self) -> bool:
        return self.trained is not None and self.trained > self.probe

    def sentence(self, strategy: str) -> str:
        if self.trained is None:
            return f"kept the probe: {self.note}"
        verdict = "kept" if self.keep_trained else "kept the probe instead of"
        return (
            f"{verdict} {strategy}: accuracy {self.trained:.3f} against the probe's "
            f"{self.probe:.3f} on {self.how}"
        )

    def to_json(self) -> dict:
        return {
            "trained": self.trained,
            "probe": self.probe,
            "n": self.n,
            "how": self.how,
            "kept": "trained" if self.keep_trained else "probe",
            **({"note": self.note} if self.note else {}),
        }


def score(task, outputs: np.ndarray, targets: np.ndarray) -> float:
    """The task's headline validation metric (accuracy for classification: higher is better;
    `auto` trains the backbone for single-label classification only)."""
    import torch

    return float(next(iter(task.headline(torch.as_tensor(outputs), targets).values())))


def on_validation(
    task, trained: np.ndarray | None, probe: np.ndarray, targets: np.ndarray
) -> Check:
    """trained=None: the trained model could not score every validation item."""
    return Check(
        None if trained is None else score(task, trained, targets),
        score(task, probe, targets),
        len(targets),
        f"the {len(targets)} validation items",
        note="" if trained is not None else "the trained model could not read every item",
    )


def cross_validated(
    task,
    features: np.ndarray,
    targets: np.ndarray,
    folds: int,
    seed: int,
    fit_fold: FoldFit | None,
    deadline: Deadline,
    say: Callable[[str], None] | None = None,
) -> Check:
    """Out-of-fold outputs of the probe and of fit_fold (the trained strategy; None: the probe
    alone) on the same stratified folds; the trained side stops where the deadline passes."""
    from sklearn.model_selection import StratifiedKFold

    from ..strategies.frozen import LinearProbe

    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, targets))
    probe_out = trained_out = None
    note = ""
    for number, (train_idx, test_idx) in enumerate(splits, 1):
        head, _ = LinearProbe().fit_head(features[train_idx], targets[train_idx], task, seed)
        probe_out = _put(
            probe_out, len(targets), test_idx, head_outputs(task, head, features[test_idx])
        )
        if fit_fold is None:
            continue  # the probe alone: its out-of-fold outputs are the validation
        if deadline.passed():
            note = f"the budget ran out before fold {number} of {folds} of the check"
            continue
        if say:
            say(f"check: fold {number}/{folds}, training on {len(train_idx)} items")
        trained_out = _put(trained_out, len(targets), test_idx, fit_fold(train_idx, test_idx))
    how = f"{folds}-fold cross-validation of the {len(targets)} labelled items"
    trained = score(task, trained_out, targets) if trained_out is not None and not note else None
    probe = score(task, probe_out, targets)
    return Check(trained, probe, len(targets), how, trained_out, probe_out, note)


def head_outputs(task, head, features: np.ndarray) -> np.ndarray:
    """The task's outputs (probabilities) of a fitted head on feature rows."""
    import torch

    with torch.no_grad():
        return task.probabilities(head(torch.from_numpy(features))).numpy()


def _put(into: np.ndarray | None, n: int, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """values written at `rows` of an (n, ...) array, made on first use."""
    if into is None:
        into = np.zeros((n, *values.shape[1:]), values.dtype)
    into[rows] = values
    return into
