"""Batched feature extraction through the embedding cache: only items never seen are computed.

Images are decoded in worker processes into uint8 tensors, normalised per batch, and run through
a BatchNorm-folded, channels-last copy of the backbone (bf16 where the hardware computes it
natively). Texts are deduplicated, sorted by length and tokenised per batch so padding is small.
Every batch of new vectors is one cache transaction, so a killed run loses at most one batch.
Keys, lookups and the cache need no torch; it is imported only when something is computed.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..data.sources import Item, Skip, Source
from ..errors import UnreadableItem
from ..modalities import get_modality
from ..zoo.entry import materialize
from .cache import EmbeddingCache, item_key
from .speed import optimise_for_inference, resolve_device_name, resolve_precision

if TYPE_CHECKING:  # torch is imported on a cache miss only: a fully cached run never loads it
    import torch

    from ..zoo.backbone import Backbone


@dataclass
class Stats:
    items: int = 0
    hits: int = 0
    computed: int = 0
    skipped: int = 0
    truncated: int = 0
    seconds: float = 0.0

    def line(self) -> str:
        rate = self.items / self.seconds if self.seconds > 0 else float("inf")
        text = (
            f"{self.items} items in {self.seconds:.2f} s ({rate:.1f} items/s); cache hits "
            f"{self.hits}, computed {self.computed}, skipped {self.skipped}"
        )
        return text + (f", truncated {self.truncated}" if self.truncated else "")


@dataclass
class Embeddings:
    features: np.ndarray  # (N, D) float32, one row per usable item, in source order
    items: list[Item]
    skipped: list[Skip] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]

    @property
    def labels(self) -> list[str | None] | None:
        labels = [item.label for item in self.items]
        return labels if any(label is not None for label in labels) else None


Progress = Callable[[int, int], None]  # (done, total)


class Extractor:
    """Embeds a Source with a frozen backbone, through the persistent cache."""

    def __init__(
        self,
        backbone: Backbone,
        *,
        precision: str = "auto",
        device: str = "auto",
        batch_size: int | None = None,
        workers: int | None = None,
        cache: EmbeddingCache | None | bool = True,
    ):
        self.backbone = backbone  # a Backbone, or a LazyBackbone built only on a cache miss
        self.device_name = resolve_device_name(device)
        self.precision = resolve_precision(precision, self.device_name)
        self.modality = get_modality(backbone.modality)
        self.batch_size = batch_size or self.modality.batch_size
        self.workers = _default_workers() if workers is None else workers
        if not _cacheable(backbone.weight_id):
            cache = None  # random or freshly tuned weights: their features are never reused
        self.cache = EmbeddingCache() if cache is True else (cache or None)
        self._fast: torch.nn.Module | None = None

    @property
    def device(self) -> torch.device:
        import torch

        return torch.device(self.device_name)

    @property
    def model_key(self) -> str:
        """Backbone architecture + exact weights + preprocessing + precision."""
        parts = [
            self.backbone.modality,
            str(self.backbone.cfg.feature_dim),
            str(self.backbone.weight_id),
            self.backbone.preprocess.digest(),
            self.precision,
        ]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]

    def run(self, source: Source, progress: Progress | None = None) -> Embeddings:
        start = time.perf_counter()
        stats = Stats(items=len(source.items))
        skipped = list(source.skipped)
        keys, bad = self._keys(source.items)
        skipped += bad
        vectors = self._lookup(keys)
        stats.hits = sum(1 for key in keys.values() if key in vectors)
        todo = _unique_misses(source.items, keys, vectors)
        if todo:
            new, failed, stats.truncated = self._compute(todo, keys, progress)
            vectors.update(new)
            skipped += _failed_in_order(source.items, keys, vectors, failed)
            stats.computed = len(new)
        kept = [item for item in source.items if keys.get(item.id) in vectors]
        stats.skipped = len(skipped)
        features = np.stack([vectors[keys[i.id]] for i in kept]) if kept else _empty(self)
        stats.items = len(source.items) + len(source.skipped)
        stats.seconds = time.perf_counter() - start
        return Embeddings(features.astype(np.float32, copy=False), kept, skipped, stats)

    # -- keys and cache ---------------------------------------------------------------------

    def _keys(self, items: list[Item]) -> tuple[dict[str, str], list[Skip]]:
        keys, bad = {}, []
        for item in items:
            try:
                digest = self.modality.content_hash(item)
            except UnreadableItem as err:
                bad.append(Skip(item.id, str(err)))
                continue
            keys[item.id] = item_key(digest, self.model_key)
        return keys, bad

    def _lookup(self, keys: dict[str, str]) -> dict[str, np.ndarray]:
        if self.cache is None:
            return {}
        return self.cache.get_many(list(set(keys.values())))

    def _store(self, keys: list[str], vecs: np.ndarray) -> None:
        if self.cache is not None:
            self.cache.put_many(self.backbone.name, self.model_key, keys, vecs)

    # -- computing --------------------------------------------------------------------------

    def _compute(self, todo: list[Item], keys: dict[str, str], progress: Progress | None):
        return self.modality.embed(self, todo, keys, progress)

    def _fast_model(self) -> torch.nn.Module:

        if self._fast is None:
            example = self.modality.dummy_batch(self.backbone, 2)
            fast = optimise_for_inference(materialize(self.backbone), example, self.precision)
            self._fast = fast.to(self.device)
        return self._fast

    @property
    def dtype(self) -> torch.dtype:
        """What float inputs are cast to before a forward pass."""
        import torch

        return torch.bfloat16 if self.precision == "bf16" else torch.float32

    def _forward(self, model, batch, autocast: bool = False) -> np.ndarray:
        """Pooled features of a batch already on the device; autocast: run in bf16 autocast
        (inputs that are not floats, such as token ids) when the precision asks for it."""
        import torch

        bf16 = autocast and self.precision == "bf16"
        cast = torch.autocast(self.device.type, torch.bfloat16) if bf16 else nullcontext()
        with torch.inference_mode(), cast:
            out = model(batch)
        return out.float().cpu().numpy()


def _unique_misses(items, keys, vectors) -> list[Item]:
    """One item per key not in the cache: duplicates (same content) are computed once."""
    seen, todo = set(), []
    for item in items:
        key = keys.get(item.id)
        if key is not None and key not in vectors and key not in seen:
            seen.add(key)
            todo.append(item)
    return todo


def _failed_in_order(items, keys, vectors, failed: list[Skip]) -> list[Skip]:
    """A Skip for every item left without a vector, in source order.

    Only one item per content is computed, so `failed` names one of each group of identical
    files; its copies fail for the same reason and must be reported too, not dropped silently.
    """
    reasons = {keys[skip.id]: skip.reason for skip in failed}
    return [
        Skip(item.id, reasons.get(keys[item.id], "no embedding was computed"))
        for item in items
        if item.id in keys and keys[item.id] not in vectors
    ]


def _cacheable(weight_id: str | None) -> bool:
    return bool(weight_id) and weight_id != "random-init" and not weight_id.startswith("tuned-")


def _empty(extractor: Extractor) -> np.ndarray:
    return np.zeros((0, extractor.backbone.feature_dim), dtype=np.float32)


def _default_workers() -> int:
    if sys.platform == "win32":
        return 0
    return max(1, min(4, (os.cpu_count() or 1) - 1))
