"""Frozen-backbone strategies: the head is fitted on cached features, in seconds, no engine."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from ..errors import HeadstartError
from ..heads import Head, Task
from ..tasks import Classification, MultiLabel, Regression
from .base import Strategy

C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


class LinearProbe(Strategy):
    name = "linear-probe"
    summary = (
        "frozen backbone, cached features, linear head fitted directly (C by cross-validation)"
    )
    frozen = True
    head_first = True  # the probe the estimator fits first is the whole model

    def fit(self, backbone, head, task: Task, train, val, cfg, *, progress=None):
        """The probe given as `head` as it is, else one fitted on train.features; no history."""
        if head is None:
            head, _ = self.fit_head(_features(train, self.name), train.targets, task, cfg.seed)
        return backbone, head, []

    def fit_head(
        self, features: np.ndarray, targets: np.ndarray, task: Task, seed: int = 0, val=None
    ) -> tuple[Head, dict]:
        head = task.build_head(features.shape[1])
        head.fit_normaliser(torch.from_numpy(features))
        x = ((torch.from_numpy(features) - head.shift) / head.scale).numpy()
        weight, bias, info = fit_linear(x, targets, task, seed)
        linear = head.net[-1]
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(weight).float())
            linear.bias.copy_(torch.from_numpy(bias).float())
        return head, info


def _features(data, name: str) -> np.ndarray:
    if data.features is None:
        raise HeadstartError(
            f"{name} fits a head on the backbone's cached features; this data has none. Pass "
            "TrainData(items, targets, features)."
        )
    return data.features


def fit_linear(x: np.ndarray, targets: np.ndarray, task: Task, seed: int):
    """(weight, bias, info) of a regularised linear model for the task, tuned by CV: the solver
    registered for the task's class (LINEAR_SOLVERS)."""
    solver = next((f for cls, f in LINEAR_SOLVERS.items() if isinstance(task, cls)), None)
    if solver is None:
        raise HeadstartError(
            f"No linear probe solves the {task.name!r} task. Use a strategy that trains the "
            "head by gradient descent (mlp-head, fine-tune)."
        )
    return solver(x, targets, task, seed)


def _logistic(x, y, n_classes, seed):
    from sklearn.linear_model import LogisticRegression

    c, cv = _choose_c(x, y, seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs convergence chatter on tiny data
        model = LogisticRegression(C=c, max_iter=2000).fit(x, y)
    weight = np.zeros((n_classes, x.shape[1]))
    bias = np.zeros(n_classes)
    present = model.classes_
    if len(present) == 2 and model.coef_.shape[0] == 1:  # binary: logits (0, w.x + b)
        weight[present[1]], bias[present[1]] = model.coef_[0], model.intercept_[0]
    else:
        weight[present], bias[present] = model.coef_, model.intercept_
    return weight, bias, {"C": c, **cv}


def _choose_c(x, y, seed) -> tuple[float, dict]:
    """C with the best cross-validated log-loss; 1.0 when a class has a single example (info
    says which)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_validate

    counts = np.bincount(y)
    folds = min(5, int(counts[counts > 0].min()))
    if folds < 2:  # one example of a class: nothing to hold out, so no CV; say so
        return 1.0, {"C_chosen_by": "default: a class has a single example, no cross-validation"}
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    scores, accuracy = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in C_GRID:
            model = LogisticRegression(C=c, max_iter=1000)
            result = cross_validate(model, x, y, cv=cv, scoring=("neg_log_loss", "accuracy"))
            scores[c] = float(-result["test_neg_log_loss"].mean())
            accuracy[c] = float(result["test_accuracy"].mean())
    best = min(scores, key=scores.get)
    return best, {"cv_log_loss": scores, "cv_accuracy": accuracy[best]}


def _per_label_logistic(x, y, seed):
    from sklearn.linear_model import LogisticRegression

    weight = np.zeros((y.shape[1], x.shape[1]))
    bias = np.zeros(y.shape[1])
    chosen = []
    for j in range(y.shape[1]):
        column = y[:, j].astype(int)
        if column.min() == column.max():  # a label always on or always off: a constant logit
            bias[j] = 10.0 if column[0] else -10.0
            continue
        c, _ = _choose_c(x, column, seed)
        model = LogisticRegression(C=c, max_iter=2000).fit(x, column)
        weight[j], bias[j] = model.coef_[0], model.intercept_[0]
        chosen.append(c)
    return weight, bias, {"C_per_label": chosen}


def _ridge(x, y):
    from sklearn.linear_model import RidgeCV

    model = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(x, y)
    return model.coef_.reshape(1, -1), np.array([model.intercept_]), {"alpha": float(model.alpha_)}


LINEAR_SOLVERS = {  # task class -> solver(x, targets, task, seed)
    Classification: lambda x, y, task, seed: _logistic(x, y, task.out_dim, seed),
    MultiLabel: lambda x, y, task, seed: _per_label_logistic(x, y, seed),
    Regression: lambda x, y, task, seed: _ridge(x, y),
}


class MLPHead(Strategy):
    """The classic recipe: frozen backbone, pooled features, Dense(1024, ReLU), dropout, softmax."""

    name = "mlp-head"
    summary = "frozen backbone, cached features, Dense(1024, ReLU) + dropout head"
    frozen = True
    default_lr = 1e-3
    hidden, dropout, max_epochs, patience = 1024, 0.5, 300, 20

    def fit(self, backbone, head, task: Task, train, val, cfg, *, progress=None):
        """A new Dense(1024) head fitted on train.features (early stopping on val's); `head` is
        not used. No history: the head trains in seconds, outside the engine."""
        monitor = None
        if val is not None and val.features is not None:
            monitor = (val.features, val.targets)
        fitted, _ = self.fit_head(
            _features(train, self.name), train.targets, task, cfg.seed, val=monitor
        )
        return backbone, fitted, []

    def fit_head(self, features, targets, task: Task, seed: int = 0, val=None):
        torch.manual_seed(seed)
        head = task.build_head(features.shape[1], self.hidden, self.dropout)
        x, y = torch.from_numpy(features), torch.from_numpy(targets)
        head.fit_normaliser(x)
        loss_fn = task.loss()
        optimizer = torch.optim.AdamW(head.parameters(), lr=self.lr, weight_decay=1e-2)
        monitor = (torch.from_numpy(val[0]), torch.from_numpy(val[1])) if val else (x, y)
        best, best_state, stale, epoch = float("inf"), None, 0, 0
        for epoch in range(self.max_epochs):  # noqa: B007
            _epoch(head, x, y, loss_fn, optimizer, seed + epoch)
            current = _loss(head, *monitor, loss_fn)
            if current < best - 1e-4:
                best, stale = current, 0
                best_state = {k: v.clone() for k, v in head.state_dict().items()}
            else:
                stale += 1
                if stale >= self.patience:
                    break
        head.load_state_dict(best_state)
        return head.eval(), {"epochs": epoch + 1, "best_monitor_loss": best}


def _epoch(head: nn.Module, x, y, loss_fn, optimizer, seed: int, batch: int = 64) -> None:
    head.train()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    for start in range(0, len(x), batch):
        index = order[start : start + batch]
        optimizer.zero_grad()
        loss_fn(head(x[index]), y[index]).backward()
        optimizer.step()


@torch.no_grad()
def _loss(head: nn.Module, x, y, loss_fn) -> float:
    head.eval()
    return float(loss_fn(head(x), y))
