"""The compare grid: every strategy at every labels-per-class size with every seed.

A cell is one `fit` exactly as `headstart fit DATA --strategy S --per-class K --seed N` runs it
(same estimator, same defaults, same split when there is no --val); its metrics are fit's own
on the test set, which is VAL when given and otherwise the held-out part of fit's own split, and
its predict time is fit's final pass over that set with the trained model.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field

from ..data.sources import Source
from ..errors import HeadstartError

ALL = None  # the per-class size that keeps every label
CONTROL = "from-scratch"
TRANSFER_DEFAULTS = ("linear-probe", "freeze-unfreeze", CONTROL)


@dataclass
class Settings:
    """What every cell shares; a fingerprint ties a finished cell to these settings."""

    modality: str
    model: str  # resolved: never empty
    epochs: int
    val_fraction: float
    data_id: str  # content fingerprint of the training data
    val_id: str | None  # content fingerprint of VAL; None: fit's own split
    text_col: str | None = None
    label_col: str | None = None
    budget: float | None = None  # seconds per fit (auto plans within it; training stops there)

    def fingerprint(self, strategy: str) -> str:
        """The settings that can change a cell of this strategy, hashed: frozen strategies never
        read the epochs, and a featuriser one (tfidf, pixels) uses no backbone either, so changing
        --epochs does not throw away linear-probe cells."""
        kind = strategy_kind(strategy)
        relevant = {
            "strategy": strategy,
            "data": self.data_id,
            "val": self.val_id if self.val_id else f"split {self.val_fraction}",
        }
        if kind != "classic":
            relevant["model"] = self.model
        if kind in ("trainable", "scratch", "auto"):
            relevant["epochs"] = self.epochs
        if kind in ("trainable", "scratch", "auto") and self.budget is not None:
            relevant["budget"] = self.budget
        text = json.dumps(relevant, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def known_fingerprint(self, strategy: str) -> str | None:
        """fingerprint(), or None for a strategy this version cannot parse."""
        try:
            return self.fingerprint(strategy)
        except (HeadstartError, KeyError):
            return None


@dataclass(frozen=True)
class Cell:
    strategy: str
    per_class: int | None
    seed: int

    @property
    def label(self) -> str:
        size = "all" if self.per_class is ALL else f"{self.per_class}/class"
        return f"{self.strategy}, {size}, seed {self.seed}"


@dataclass
class Grid:
    strategies: list[str]
    sizes: list[int | None]
    seeds: list[int]
    cells: list[Cell] = field(init=False)

    def __post_init__(self) -> None:
        # seed-major, then size, then strategy: every strategy is measured early on, so partial
        # results (and the time estimate) cover the whole range of costs from the first minutes
        self.cells = [
            Cell(strategy, size, seed)
            for seed in self.seeds
            for size in self.sizes
            for strategy in self.strategies
        ]


def strategy_kind(spec: str) -> str:
    """'classic' (no backbone: a featuriser), 'frozen' (cached features), 'scratch',
    'trainable' or 'auto' (any of them, chosen per fit)."""
    from ..strategies import STRATEGIES
    from ..strategies.base import parse_strategy

    if spec == "auto":
        return "auto"
    cls = STRATEGIES[parse_strategy(spec)[0]]
    if not cls.needs_backbone:
        return "classic"
    if cls.frozen:
        return "frozen"
    return "trainable" if cls.pretrained else "scratch"


def default_strategies(modality: str) -> list[str]:
    """linear-probe, freeze-unfreeze, from-scratch and the modality's no-transfer baseline."""
    from ..modalities import get_modality
    from ..strategies import STRATEGIES

    names = list(TRANSFER_DEFAULTS)
    baseline = get_modality(modality).control_strategy
    if baseline in STRATEGIES and modality in STRATEGIES[baseline].modalities:
        names.append(baseline)
    return names


def parse_sizes(text: str) -> list[int | None]:
    """'1,5,10,all' -> [1, 5, 10, None], ascending, 'all' last, duplicates dropped."""
    sizes: set[int] = set()
    keep_all = False
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        if part.lower() == "all":
            keep_all = True
            continue
        try:
            value = int(part)
        except ValueError:
            raise HeadstartError(
                f"--per-class: {part!r} is not a whole number or 'all'; give a comma-separated "
                "list such as 1,5,10,all."
            ) from None
        if value < 1:
            raise HeadstartError(f"--per-class sizes must be at least 1; got {value}.")
        sizes.add(value)
    if not sizes and not keep_all:
        raise HeadstartError("--per-class is empty; give sizes such as 1,5,10,all.")
    return sorted(sizes) + ([ALL] if keep_all else [])


def parse_strategies(text: str, modality: str) -> list[str]:
    """Comma-separated strategy names (options allowed: 'lora:r=4'), checked for this modality."""
    from ..strategies.base import check_strategy

    names = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        check_strategy(part, modality, "compare", "classification")  # compare's only task
        if part not in names:
            names.append(part)
    if not names:
        raise HeadstartError("--strategies is empty; name at least one strategy.")
    return names


def estimator_for(modality: str):
    from .. import estimators
    from ..modalities import MODALITIES

    kind = MODALITIES.get(modality)
    cls = getattr(estimators, kind.estimator, None) if kind is not None else None
    if cls is None:
        known = " or ".join(m.plural for m in MODALITIES.values() if m.estimator)
        raise HeadstartError(f"compare needs {known}; this data holds {modality}.")
    return cls


def run_cell(cell: Cell, settings: Settings, train: Source, val: Source | None) -> dict:
    """Fit and evaluate one cell; a user-level failure becomes a row with its reason."""
    cls = estimator_for(settings.modality)
    est = cls(
        model=settings.model,
        strategy=cell.strategy,
        epochs=settings.epochs,
        seed=cell.seed,
        per_class=cell.per_class,
        val_fraction=settings.val_fraction,
        verbose=False,
        budget=settings.budget,
    )
    row = {
        "strategy": cell.strategy,
        "per_class": "all" if cell.per_class is ALL else cell.per_class,
        "seed": cell.seed,
    }
    try:
        started = time.perf_counter()
        est.fit(train, val=val, text_col=settings.text_col, label_col=settings.label_col)
        train_seconds = time.perf_counter() - started
        # fit already predicted the test set (VAL, or its held-out split): evaluate would repeat it
        metrics, predict_seconds = est.metrics_, est.fit_info_["val_predict_seconds"]
    except HeadstartError as exc:
        return {**row, **_empty_measures(), "status": f"failed: {exc}"}
    return {
        **row,
        "n_train": est.fit_info_["n_train"],
        "n_test": metrics["n"],
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "log_loss": metrics.get("log_loss"),  # sensitive to every weight: the reproducibility check
        "train_seconds": train_seconds,
        "predict_seconds": predict_seconds,
        "trainable_parameters": trainable_parameters(est),
        "status": "ok",
    }


def _empty_measures() -> dict:
    keys = ("n_train", "n_test", "accuracy", "macro_f1", "log_loss", "train_seconds")
    keys += ("predict_seconds",)
    return {**dict.fromkeys(keys, ""), "trainable_parameters": ""}


def trainable_parameters(est) -> int:
    """Numbers the fit changed: the head, plus the backbone (or its adapter) when it trained."""
    # a torch head's normaliser buffers are fixed, not learnt: parameters() leaves them out
    count = sum(int(p.numel()) for p in est.head_.parameters())
    return count + est.strategy_.trained_parameters(est.backbone_)  # lora: its adapters only
