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
from ..errors import HeadstartError, UnreadableItem
from ..zoo.entry import materialize
from .cache import EmbeddingCache, content_hash_file, content_hash_text, item_key
from .speed import optimise_for_inference, resolve_device_name, resolve_precision
from .truncation import count_truncated

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
        self.batch_size = batch_size or (32 if backbone.modality == "image" else 64)
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
                digest = content_hash_text(item.text) if item.text is not None else _hash(item)
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
        if self.backbone.modality == "image":
            return self._compute_images(todo, keys, progress)
        if self.backbone.modality == "text":
            return self._compute_texts(todo, keys, progress)
        raise HeadstartError(
            f"Extraction for modality {self.backbone.modality!r} is not wired yet."
        )

    def _compute_images(self, todo, keys, progress):
        import torch
        from torch.utils.data import DataLoader

        model = self._fast_model()
        pre = self.backbone.preprocess
        mean = torch.tensor(pre.mean).view(1, 3, 1, 1) * 255
        std = torch.tensor(pre.std).view(1, 3, 1, 1) * 255
        loader = DataLoader(
            _ImageFiles(todo, pre),
            batch_size=self.batch_size,
            num_workers=self.workers,
            collate_fn=_collate,
            persistent_workers=False,
            prefetch_factor=4 if self.workers else None,
        )
        new, failed, done = {}, [], 0
        for indices, images, errors in loader:
            failed += [Skip(todo[i].id, reason) for i, reason in errors]
            if images is not None:
                batch = ((images.float() - mean) / std).contiguous(
                    memory_format=torch.channels_last
                )
                vecs = self._forward(model, batch)
                batch_keys = [keys[todo[i].id] for i in indices]
                self._store(batch_keys, vecs)
                new.update(zip(batch_keys, vecs, strict=True))
            done += len(indices) + len(errors)
            if progress:
                progress(done, len(todo))
        return new, failed, 0

    def _compute_texts(self, todo, keys, progress):
        """Tokenise everything once, sort by exact token count, so batches carry no padding."""
        backbone = materialize(self.backbone)
        texts = [item.text for item in todo]
        ids = backbone.token_ids(texts)
        order = sorted(range(len(todo)), key=lambda i: len(ids[i]), reverse=True)
        model = backbone.to(self.device)
        new, done = {}, 0
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            batch = backbone.pad([ids[i] for i in chunk])
            vecs = self._forward(model, {k: v.to(self.device) for k, v in batch.items()})
            batch_keys = [keys[todo[i].id] for i in chunk]
            self._store(batch_keys, vecs)
            new.update(zip(batch_keys, vecs, strict=True))
            done += len(chunk)
            if progress:
                progress(done, len(todo))
        truncated = count_truncated(backbone.tokenizer, texts, backbone.preprocess.max_length)
        return new, [], truncated

    def _fast_model(self) -> torch.nn.Module:
        import torch

        if self._fast is None:
            size = self.backbone.preprocess.input_size
            example = torch.randn(2, 3, size, size)
            fast = optimise_for_inference(materialize(self.backbone), example, self.precision)
            self._fast = fast.to(self.device)
        return self._fast

    def _forward(self, model, batch) -> np.ndarray:
        import torch

        cast = torch.bfloat16 if self.precision == "bf16" else None
        with torch.inference_mode():
            if isinstance(batch, dict):
                ctx = torch.autocast(self.device.type, cast) if cast else nullcontext()
                with ctx:
                    out = model(batch)
            else:
                batch = batch.to(self.device, dtype=cast or torch.float32)
                out = model(batch)
        return out.float().cpu().numpy()


class _ImageFiles:
    """A map-style dataset (all a DataLoader needs) of decoded images."""

    def __init__(self, items: list[Item], pre):
        self.items, self.pre = items, pre

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        from ..data.images import decode_for_model

        try:
            return index, decode_for_model(self.items[index].path, self.pre), None
        except UnreadableItem as err:
            return index, None, str(err)


def _collate(rows):
    import torch

    good = [(i, t) for i, t, _ in rows if t is not None]
    errors = [(i, reason) for i, t, reason in rows if t is None]
    images = torch.stack([t for _, t in good]) if good else None
    return [i for i, _ in good], images, errors


def _hash(item: Item) -> str:
    path = item.path
    try:
        if path.is_dir():
            raise UnreadableItem("is a directory")
        return content_hash_file(path)
    except FileNotFoundError:
        raise UnreadableItem("file not found") from None
    except OSError as err:
        raise UnreadableItem(f"cannot read ({err.strerror or err})") from None


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
