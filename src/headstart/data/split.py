"""Seeded, stratified splits and few-label subsets of a Source."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import HeadstartError
from .sources import Item, Source


def _groups(items: list[Item], stratify: bool) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(item.label if stratify else "", []).append(index)
    return groups


def class_counts(items: list[Item]) -> dict[str, int]:
    """Items per label, labels sorted."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item.label] = counts.get(item.label, 0) + 1
    return dict(sorted(counts.items()))


def split(
    source: Source, fraction: float, seed: int, stratify: bool = True
) -> tuple[Source, Source]:
    """(train, val): `fraction` of each class to val, at least one item per class on each side."""
    if not 0 < fraction < 1:
        raise HeadstartError(f"--val-fraction must be between 0 and 1; got {fraction}.")
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for label, indices in sorted(_groups(source.items, stratify).items()):
        if stratify and len(indices) < 2:
            raise HeadstartError(
                f"Class {label!r} has {len(indices)} example; a validation split needs at least "
                "2 per class. Add examples, or pass a separate --val set."
            )
        order = rng.permutation(indices)
        n_val = min(len(order) - 1, max(1, round(len(order) * fraction)))
        val_idx += order[:n_val].tolist()
        train_idx += order[n_val:].tolist()
    return _subset(source, sorted(train_idx)), _subset(source, sorted(val_idx), skipped=False)


def per_class(source: Source, k: int, seed: int) -> Source:
    """Keep k labelled examples per class (seeded); classes with fewer keep all they have."""
    if k < 1:
        raise HeadstartError(f"--per-class must be at least 1; got {k}.")
    rng = np.random.default_rng(seed)
    keep = []
    for _, indices in sorted(_groups(source.items, True).items()):
        keep += rng.permutation(indices)[:k].tolist()
    return _subset(source, sorted(keep))


def _subset(source: Source, indices: list[int], skipped: bool = True) -> Source:
    return replace(
        source,
        items=[source.items[i] for i in indices],
        skipped=list(source.skipped) if skipped else [],
    )
