"""The backbone zoo: one registry of pre-trained models with typed configs."""

import os

# Never let a library reach for the network by surprise; hub access is explicit (weights.py).
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from .backbone import Backbone, ParamGroup  # noqa: E402
from .config import ImagePreprocess, PretrainedCfg, TextPreprocess, WeightSource  # noqa: E402
from .entry import ZooEntry  # noqa: E402
from .registry import (  # noqa: E402
    DEFAULT_IMAGE,
    DEFAULT_TEXT,
    build,
    bundled_names,
    get_entry,
    register,
    registered_names,
)

__all__ = [
    "Backbone",
    "ParamGroup",
    "ImagePreprocess",
    "PretrainedCfg",
    "TextPreprocess",
    "WeightSource",
    "ZooEntry",
    "DEFAULT_IMAGE",
    "DEFAULT_TEXT",
    "build",
    "bundled_names",
    "get_entry",
    "register",
    "registered_names",
]
