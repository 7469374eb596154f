"""torchmetrics metrics that the built-in ones do not give exactly as headstart reports them
(scikit-learn's conventions): log-loss with clipping, multilabel macro-F1 over active labels,
per-label average precision only where a label has positives, R^2 with sklearn's edge rules."""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

EPS = 1e-15


class _InDouble:
    """Counts divided in float64: torchmetrics divides integer counts in float32, and the
    report's numbers are scikit-learn's to the last digit."""

    def _final_state(self):
        return tuple(state.double() for state in super()._final_state())


def in_double(metric: type[Metric]) -> type[Metric]:
    """A torchmetrics stat-score metric class (accuracy, precision, recall, F1) in float64."""
    return type(metric.__name__, (_InDouble, metric), {})


def exact_match() -> Metric:
    """The share of examples whose every label is right (sklearn's subset accuracy)."""
    from torchmetrics.classification import MultilabelExactMatch

    class ExactMatch(MultilabelExactMatch):
        def compute(self) -> torch.Tensor:
            return self.correct.sum().double() / self.total.sum().clamp(min=1)

    return ExactMatch


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
                scores[j] = average_precision(probs[:, j], target[:, j])
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


def average_precision(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """sklearn's average precision in float64: the sum over score thresholds (highest first) of
    precision times the gain in recall; tied scores form one threshold."""
    scores = scores.double()
    order = torch.argsort(scores, descending=True, stable=True)
    scores, hits = scores[order], positive[order].double()
    last = torch.cat(
        [
            torch.nonzero(scores[1:] != scores[:-1]).flatten(),
            scores.new_tensor([len(scores) - 1]).long(),
        ]
    )
    tps = hits.cumsum(0)[last]
    precision = tps / (last + 1).double()
    recall = tps / tps[-1]
    return (torch.diff(recall, prepend=recall.new_zeros(1)) * precision).sum()
