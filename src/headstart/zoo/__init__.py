"""The backbone zoo: one registry of pre-trained models with typed configs.

Importing it costs no torch: entries are metadata; `Backbone` and `ParamGroup` (torch modules)
are imported on first access.
"""

import os

# Never let a library reach for the network by surprise; hub access is explicit (weights.py).
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from .config import ImagePreprocess, PretrainedCfg, TextPreprocess, WeightSource  # noqa: E402
from .entry import LazyBackbone, ZooEntry  # noqa: E402
from .registry import (  # noqa: E402
    DEFAULT_IMAGE,
    DEFAULT_MODEL,
    DEFAULT_TEXT,
    build,
    bundled_names,
    get_entry,
    load_backbone,
    register,
    registered_names,
)

_LAZY = {"Backbone", "ParamGroup"}


def __getattr__(name: str):
    if name in _LAZY:
        from . import backbone

        return getattr(backbone, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Backbone",
    "ParamGroup",
    "ImagePreprocess",
    "LazyBackbone",
    "PretrainedCfg",
    "TextPreprocess",
    "WeightSource",
    "ZooEntry",
    "DEFAULT_IMAGE",
    "DEFAULT_MODEL",
    "DEFAULT_TEXT",
    "build",
    "bundled_names",
    "get_entry",
    "load_backbone",
    "register",
    "registered_names",
]
