"""Transfer strategies: one interface (strategies.base.Strategy), one object per way of fitting.

A strategy decides what trains and at which learning rate, epoch by epoch, and how its trained
part is saved and restored. Frozen strategies (linear-probe, mlp-head) never touch the backbone:
they fit a head on cached features. Text-only strategies (lora, contrastive) run their own
training loop in fit(). tfidf, pixels and mfcc carry a no-transfer featuriser instead of a backbone.
"""

from .base import STRATEGIES, Strategy, applicable, get_strategy, refusal
from .frozen import LinearProbe, MLPHead
from .trainable import FineTune, FreezeUnfreeze, FromScratch, Gradual

# isort: split
# registered after the classic strategies, so that listings keep that order
from .classic import TfidfLogistic
from .contrastive import Contrastive
from .featurised import FeaturiserStrategy
from .lora import LoRA
from .mfcc import MFCCLogistic
from .pixels import PixelsLogistic

__all__ = [
    "STRATEGIES",
    "Strategy",
    "get_strategy",
    "refusal",
    "applicable",
    "FeaturiserStrategy",
    "LinearProbe",
    "MLPHead",
    "FineTune",
    "FreezeUnfreeze",
    "FromScratch",
    "Gradual",
    "LoRA",
    "Contrastive",
    "TfidfLogistic",
    "PixelsLogistic",
    "MFCCLogistic",
]
