"""Transfer strategies: small objects over a backbone's parameter groups.

A strategy decides what trains and at which learning rate, epoch by epoch. Frozen strategies
(linear-probe, mlp-head) never touch the backbone: they fit a head on cached features. Text-only
strategies (lora, contrastive) bring their own training through an `adapt` hook.
"""

from .base import STRATEGIES, Strategy, get_strategy
from .frozen import LinearProbe, MLPHead
from .trainable import FineTune, FreezeUnfreeze, FromScratch, Gradual

# isort: split
# registered after the classic strategies, so that listings keep that order
from .classic import TfidfLogistic
from .contrastive import Contrastive
from .lora import LoRA
from .pixels import PixelsLogistic

__all__ = [
    "STRATEGIES",
    "Strategy",
    "get_strategy",
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
]
