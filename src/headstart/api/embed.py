"""Embed a data source with a frozen backbone, through the cache.

A run whose items are all cached imports no torch: the backbone is built (and torch imported)
only on a cache miss.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..data.sources import Source, read_source
from ..features.extract import Embeddings, Extractor, Progress
from ..files import write_bytes_atomic
from ..zoo import load_backbone


def embed_source(
    source: Source,
    model: str = "",
    weights=None,
    progress: Progress | None = None,
    preprocess: dict | None = None,
    **options,
) -> Embeddings:
    backbone = load_backbone(model, source.modality, weights, preprocess)
    options = {k: v for k, v in options.items() if v is not None}
    return Extractor(backbone, **options).run(source, progress)


def embed(data, model: str = "", **options) -> Embeddings:
    """Python API: `headstart.embed("folder/")` -> Embeddings(features, items, skipped, stats)."""
    source = data if isinstance(data, Source) else read_source(data)
    return embed_source(source, model, **options)


def save_npz(path: Path, result: Embeddings) -> None:
    """features (N x D float32), ids, labels (when present); written atomically."""
    arrays = {"features": result.features, "ids": np.array(result.ids, dtype=str)}
    if result.labels is not None:
        arrays["labels"] = np.array(["" if x is None else x for x in result.labels], dtype=str)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes_atomic(path, buffer.getvalue())
