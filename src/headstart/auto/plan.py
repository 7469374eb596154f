"""The `auto` strategy: the option with the best expected validation score that fits the budget.

Every option is scored against the linear probe that `auto` starts from (fitted on the cached
features in seconds, so it is always there): its expected gain over the probe, in accuracy
points, from what this project measured (Modality.auto_gains), and its cost on this machine,
from a measured training step (`cost.measure`), with the check that decides afterwards between
the trained model and the probe on held-out data. The option with the highest expected gain
that fits what is left of the budget wins; without a budget, every option fits except those a
CPU would need hours for. The gains are priors, not promises: the check keeps the probe
whenever the trained model does not beat it on held-out data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from .budget import format_seconds
from .cost import Costs

FEW_PER_CLASS = 20  # fewer labels than this in a class: no backbone training by epochs
PROBE_GOOD_ENOUGH = 0.97  # a probe this accurate (cross-validated) leaves little to gain
CPU_PROBE_ONLY_ROWS = 5000  # without a budget, more rows than this on a CPU: probe only
MIN_VAL = 200  # a validation split smaller than this cannot tell two models apart: use CV
CV_FOLDS = (3, 2)  # folds of the check on small data: 3 where the budget allows, else 2
SAFETY = 0.85  # plan to use this share of the budget: estimates are estimates
# contrastive cut below this many pairs per text is not worth its time: measured on SST-2 at 64
# per class (mpnet_base, 3 seeds, 5-minute budget on 2 CPU cores), 4-6 pairs per text gave
# 0.848 against the probe's 0.846, in 290 s against 17 s; 13-16 per text at 16 per class gave
# 0.892 against 0.819
MIN_PAIRS_PER_ITEM = 8
LONG_SECONDS = 180.0  # warn up front when the chosen work is estimated to take longer

# The expected gain of each trained option over the probe lives with the modality
# (Modality.auto_gains), with the measurements it comes from; a GPU with many rows adds
# fine-tuning every layer, the standard recipe, cheap there.
GPU_FINE_TUNE_GAIN = 2.0
FEW_FOR_CONTRASTIVE = 64  # labels per class up to which contrastive gains most


@dataclass(frozen=True)
class Situation:
    """What `auto` knows before choosing."""

    task_kind: str
    one_class_per_item: bool
    modality: str
    counts: dict[str, int]  # labels per class in the training data
    probe_cv: float | None  # the probe's cross-validated accuracy on the training data
    device_type: str
    n_val: int  # held-out items for the check (0: cross-validation instead)
    epochs: int
    remaining: float | None  # seconds left of the budget; None: no budget

    @property
    def smallest(self) -> int:
        return min(self.counts.values())

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Option:
    strategy: str  # a strategy spec, options included
    gain: float  # expected accuracy points over the probe
    seconds: float  # estimated wall time, the check included
    why: str
    epochs: int | None = None  # for strategies trained by epochs
    folds: int = 0  # folds of the cross-validated check (0: the validation split checks)


@dataclass(frozen=True)
class Plan:
    strategy: str
    reason: str
    seconds: float = 0.0  # estimated
    check: str = ""  # "validation", "cross-validation" or "" (the probe: nothing to check)
    epochs: int | None = None
    folds: int = 0
    options: tuple[Option, ...] = ()
    costs: Costs | None = None  # what was measured, where something was

    @property
    def long(self) -> bool:
        return self.seconds > LONG_SECONDS


def check_kind(situation: Situation) -> str:
    return "validation" if situation.n_val >= MIN_VAL else "cross-validation"


def choose(
    situation: Situation,
    costs: Callable[[], Costs | None] | None = None,
    layer_scan: Callable[[], dict | None] | None = None,
    pairs: Callable[[int], int] | None = None,
) -> Plan:
    """The plan for `auto`. costs() measures a training step (called only where an option
    trains the backbone); layer_scan() advises how many groups to train (called only where
    freeze-unfreeze is on offer); pairs(max_pairs) counts contrastive's pairs for the data."""
    early = _probe_only(situation)
    if early is not None:
        return Plan("linear-probe", early)
    offers = _offers(situation)
    if not offers:
        return Plan("linear-probe", _nothing_offered(situation))
    measured = costs() if costs is not None else None
    if measured is None:
        return Plan("linear-probe", "the cost of training could not be measured here")
    options = [_priced(situation, offer, measured, pairs) for offer in offers]
    fitting = [o for o in options if _fits(o, situation)]
    if not fitting:
        reason = _over_budget(situation, options)
        return Plan("linear-probe", reason, options=tuple(options), costs=measured)
    best = max(fitting, key=lambda o: (o.gain, -o.seconds))
    best = _with_layer_advice(best, layer_scan)
    check = check_kind(situation)
    return Plan(
        best.strategy,
        _reason(situation, best),
        best.seconds,
        check,
        best.epochs,
        best.folds,
        tuple(options),
        measured,
    )


def _probe_only(s: Situation) -> str | None:
    """Why no trained option is considered at all, or None."""
    if not s.one_class_per_item:
        return f"{s.task_kind} task: a linear head on frozen features is the safe start"
    if s.probe_cv is not None and s.probe_cv >= PROBE_GOOD_ENOUGH:
        return (
            f"frozen features already separate the classes (cross-validated probe accuracy "
            f"{s.probe_cv:.3f}); training has little to add"
        )
    if s.remaining is None and s.device_type == "cpu" and s.total > CPU_PROBE_ONLY_ROWS:
        return (
            f"{s.total} rows on a CPU: training the backbone would take hours; probe first "
            "(give --budget to let auto train within it)"
        )
    return None


def _offers(s: Situation) -> list[tuple[str, float, str]]:
    """(strategy, expected gain, why) for every trained option this data allows."""
    from ..modalities import get_modality

    kind = get_modality(s.modality)
    regimes = {"few" if s.smallest <= FEW_FOR_CONTRASTIVE else "more"}
    if s.smallest >= FEW_PER_CLASS and s.total >= kind.auto_train_rows:
        regimes.add("many")
    offers = [
        (strategy, gain, why)
        for (strategy, regime), (gain, why) in kind.auto_gains.items()
        if regime in regimes and s.total >= 4
    ]
    gpu_rows = kind.fine_tune_rows is not None and s.total >= kind.fine_tune_rows
    if s.device_type == "cuda" and gpu_rows and s.smallest >= FEW_PER_CLASS:
        why = f"{s.total} labelled {kind.plural} and a GPU: every layer trains, the standard recipe"
        offers.append(("fine-tune", GPU_FINE_TUNE_GAIN, why))
    return offers


def _priced(s: Situation, offer, costs: Costs, pairs) -> Option:
    """The option at its cost: with 3 folds of checking, else 2, else cut (fewer pairs, fewer
    epochs) to fit; the last try is returned even when it does not fit (_fits drops it)."""
    strategy, gain, why = offer
    price = _pair_price if strategy == "contrastive" else _epoch_price
    choices = (0,) if check_kind(s) == "validation" else CV_FOLDS
    for folds in choices:  # the whole option, checked as thoroughly as the budget allows
        option = price(s, strategy, gain, why, costs, pairs, folds, cut=False)
        if _fits(option, s):
            return option
    return price(s, strategy, gain, why, costs, pairs, choices[-1], cut=True)


def _epoch_price(s: Situation, strategy, gain, why, costs, pairs, folds: int, cut: bool) -> Option:
    def cost_for(epochs: int) -> float:
        return _with_check(
            s, lambda n_train, n_val: costs.epochs(n_train, n_val, epochs), costs, folds
        )

    option = Option(strategy, gain, cost_for(s.epochs), why, s.epochs, folds)
    if not cut or s.remaining is None or _fits(option, s) or s.epochs == 1:
        return option
    # fewer epochs where the budget is short: the most that fit
    affordable = next(
        (e for e in range(s.epochs - 1, 0, -1) if cost_for(e) <= s.remaining * SAFETY), 0
    )
    if affordable < 1:
        return option
    return Option(strategy, gain, cost_for(affordable), why, affordable, folds)


def _pair_price(s: Situation, strategy, gain, why, costs, pairs, folds: int, cut: bool) -> Option:
    from ..strategies.contrastive import Contrastive

    default = Contrastive()
    count = pairs(default.max_pairs) if pairs is not None else s.total * (s.total - 1) // 2

    def cost_for(n_pairs: int) -> float:
        # a fold's pairs shrink with its data (pairs grow as the square of the items)
        def fit_cost(n_train: int, n_val: int) -> float:
            scaled = max(1, round(n_pairs * min(1.0, (n_train / s.total) ** 2)))
            return costs.pairs(scaled, default.batch, n_train + n_val)

        return _with_check(s, fit_cost, costs, folds)

    option = Option(strategy, gain, cost_for(count), why, None, folds)
    if not cut or s.remaining is None or _fits(option, s):
        return option
    # the budget buys fewer pairs: the cost is linear in them
    full, none = option.seconds, cost_for(0)
    capped = int(count * (s.remaining * SAFETY - none) / max(full - none, 1e-9))
    while capped >= MIN_PAIRS_PER_ITEM * s.total and cost_for(capped) > s.remaining * SAFETY:
        capped = int(capped * 0.95)  # whole steps round the cost up: trim until it fits
    if capped < MIN_PAIRS_PER_ITEM * s.total:
        return option
    return Option(f"{strategy}:max_pairs={capped}", gain, cost_for(capped), why, None, folds)


def _with_check(
    s: Situation, fit_cost: Callable[[int, int], float], costs: Costs, folds: int
) -> float:
    """The option's cost with its check: one fit against the validation split (folds=0), or
    (small data) one fit per fold plus the final fit on everything."""
    if not folds:
        return fit_cost(s.total, s.n_val) + s.n_val * costs.embed_item
    fold_train = math.ceil(s.total * (folds - 1) / folds)
    checking = folds * fit_cost(fold_train, 0) + s.total * costs.embed_item
    return checking + fit_cost(s.total, 0)


def _fits(option: Option, s: Situation) -> bool:
    return s.remaining is None or option.seconds <= s.remaining * SAFETY


def _with_layer_advice(option: Option, layer_scan) -> Option:
    if option.strategy != "freeze-unfreeze" or layer_scan is None:
        return option
    advice = layer_scan()
    if not advice:
        return option
    advice = {**advice, "reason": advice["reason"].rstrip(".")}
    if advice["unfreeze"] >= advice["groups"]:
        return replace(option, why=f"{option.why}; layer scan: {advice['reason']}")
    return replace(
        option,
        strategy=f"freeze-unfreeze:groups={advice['unfreeze']}",
        why=f"head first, then the top {advice['unfreeze']} groups; layer scan: {advice['reason']}",
    )


def _reason(s: Situation, best: Option) -> str:
    probe = f"{s.probe_cv:.3f}" if s.probe_cv is not None else "unknown"
    budget = (
        f" within the {format_seconds(s.remaining)} left of the budget"
        if s.remaining is not None
        else ""
    )
    epochs = ""
    if best.epochs and best.epochs < s.epochs:
        epochs = f", {best.epochs} epoch{'s' if best.epochs > 1 else ''}"
    return (
        f"{best.why}: expected +{best.gain:.1f} points over the probe (cross-validated "
        f"{probe}), estimated {format_seconds(best.seconds)}{epochs}{budget} on this machine; "
        f"kept only if it beats the probe on {_check_words(best, s)}"
    )


def _check_words(best: Option, s: Situation) -> str:
    if not best.folds:
        return f"the {s.n_val} validation items"
    return f"{best.folds}-fold cross-validation of the {s.total} labelled items"


def _nothing_offered(s: Situation) -> str:
    if s.smallest < FEW_PER_CLASS:
        return (
            f"few labels ({s.smallest} in the smallest class, under {FEW_PER_CLASS}): training "
            "the backbone would overfit, a linear probe on frozen features is the most reliable"
        )
    return f"no trained strategy is expected to beat the probe on {s.total} {s.modality} items"


def _over_budget(s: Situation, options: list[Option]) -> str:
    cheapest = min(options, key=lambda o: o.seconds)
    return (
        f"the probe fits the budget ({format_seconds(s.remaining or 0)} left); "
        f"{cheapest.strategy} would need about {format_seconds(cheapest.seconds)} on this machine"
    )
