"""torchmetrics metrics that the built-in ones do not give exactly as headstart reports them
(scikit-learn's conventions): log-loss with clipping, multilabel macro-F1 over active labels,
per-label average precision only where a label has positives, R^2 with sklearn's edge rules."""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.functional.classification import binary_average_precision
from torchmetrics.utilities import dim_zero_cat

EPS = 1e-15


class LogLoss(Metric):
    """Mean of -log(probability of the true class), probabilities clipped to [EPS, 1]."""

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        p_true = probs.gather(1, target.long().unsqueeze(1)).squeeze(1).double()
        self.total += -p_true.clamp(EPS, 1.0).log().sum()
        self.count += len(target)

    def compute(self) -> torch.Tensor:
        return self.total / self.count.clamp(min=1)


class ActiveMacroF1(Metric):
    """Mean F1 over the labels that occur in the targets or the predictions (0 when none do):
    sklearn's macro-F1 on the labels present, so an absent label does not drag it to zero.
    Takes 0/1 predictions and 0/1 targets, N x L."""

    full_state_update = False

    def __init__(self, num_labels: int, **kwargs):
        super().__init__(**kwargs)
        for name in ("tp", "fp", "fn"):
            self.add_state(name, torch.zeros(num_labels, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        predicted, actual = preds.bool(), target.bool()
        self.tp += (predicted & actual).sum(0)
        self.fp += (predicted & ~actual).sum(0)
        self.fn += (~predicted & actual).sum(0)

    def compute(self) -> torch.Tensor:
        denominator = 2 * self.tp + self.fp + self.fn
        active = denominator > 0
        if not active.any():
            return torch.zeros((), dtype=torch.float64)
        return (2 * self.tp[active] / denominator[active]).double().mean()


class LabelAveragePrecision(Metric):
    """Average precision per label (N x L probabilities); NaN for a label without positives."""

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("preds", [], dist_reduce_fx="cat")
        self.add_state("target", [], dist_reduce_fx="cat")

    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        self.preds.append(probs)
        self.target.append(target.long())

    def compute(self) -> torch.Tensor:
        probs, target = dim_zero_cat(self.preds), dim_zero_cat(self.target)
        scores = torch.full((target.shape[1],), float("nan"), dtype=torch.float64)
        for j in range(target.shape[1]):
            if target[:, j].any():
                scores[j] = binary_average_precision(probs[:, j], target[:, j], thresholds=None)
        return scores


class MeanAveragePrecision(LabelAveragePrecision):
    """Mean of the per-label average precision over labels with positives (NaN when none)."""

    def compute(self) -> torch.Tensor:
        scores = super().compute()
        scored = scores[~scores.isnan()]
        return scored.mean() if len(scored) else torch.tensor(float("nan"), dtype=torch.float64)


class R2(Metric):
    """Coefficient of determination as scikit-learn gives it: constant targets score 1.0 when
    predicted exactly, else 0.0; NaN with fewer than two examples."""

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("preds", [], dist_reduce_fx="cat")
        self.add_state("target", [], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self.preds.append(preds.reshape(-1).double())
        self.target.append(target.reshape(-1).double())

    def compute(self) -> torch.Tensor:
        preds, target = dim_zero_cat(self.preds), dim_zero_cat(self.target)
        if len(target) < 2:
            return torch.tensor(float("nan"), dtype=torch.float64)
        residual = (target - preds).pow(2).sum()
        total = (target - target.mean()).pow(2).sum()
        if total == 0:
            return torch.tensor(1.0 if residual == 0 else 0.0, dtype=torch.float64)
        return 1 - residual / total
