"""Transfer strategies: small objects over a backbone's parameter groups.

A strategy decides what trains and at which learning rate, epoch by epoch. Frozen strategies
(linear-probe, mlp-head) never touch the backbone: they fit a head on cached features.
"""

from .base import STRATEGIES, Strategy, get_strategy
from .frozen import LinearProbe, MLPHead
from .trainable import FineTune, FreezeUnfreeze, FromScratch, Gradual

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
]
