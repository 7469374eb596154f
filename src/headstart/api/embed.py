"""Embed a data source with a frozen backbone, through the cache."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ..data.sources import Source, read_source
from ..errors import HeadstartError
from ..features.extract import Embeddings, Extractor, Progress
from ..zoo import DEFAULT_IMAGE, DEFAULT_TEXT, get_entry
from ..zoo.entry import LazyBackbone

DEFAULT_MODEL = {"image": DEFAULT_IMAGE, "text": DEFAULT_TEXT}


def load_backbone(model: str, modality: str, weights=None) -> LazyBackbone:
    """The named backbone (default: the bundled one for the modality), checked against the data."""
    name = model or DEFAULT_MODEL[modality]
    entry = get_entry(name)
    if entry.modality != modality:
        raise HeadstartError(
            f"Model {name!r} takes {entry.modality} input but the data is {modality}. "
            f"Use {'an' if modality == 'image' else 'a'} {modality} backbone, "
            f"e.g. --model {DEFAULT_MODEL[modality]}."
        )
    path = Path(weights).expanduser() if weights else None
    if path is not None and not path.is_file():
        raise HeadstartError(
            f"Weights file '{path}' does not exist (or is not a file). Check --weights."
        )
    return LazyBackbone(entry, path)


def embed_source(
    source: Source,
    model: str = "",
    weights=None,
    progress: Progress | None = None,
    **options,
) -> Embeddings:
    backbone = load_backbone(model, source.modality, weights)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)
