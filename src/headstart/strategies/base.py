"""The Strategy interface and its registry."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from ..errors import check_choice
from ..zoo.backbone import Backbone

STRATEGIES: dict[str, type[Strategy]] = {}


class Strategy:
    name: ClassVar[str] = ""
    frozen: ClassVar[bool] = False  # True: the head is fitted on cached features only
    pretrained: ClassVar[bool] = True  # False: the backbone starts from random weights
    head_first: ClassVar[bool] = False  # fit the head on cached features before training
    summary: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            STRATEGIES[cls.name] = cls

    def __init__(self, lr: float | None = None, lr_decay: float | None = None):
        self.lr = lr or self.default_lr
        self.lr_decay = lr_decay

    default_lr: ClassVar[float] = 3e-4

    def optimizer_groups(self, backbone: Backbone, head: nn.Module) -> list[dict]:
        """One optimiser group per backbone group (input to output), then the head."""
        groups = backbone.groups()
        rates = self.group_rates(len(groups))
        out = [
            {"params": g.params, "lr": rate, "name": g.name}
            for g, rate in zip(groups, rates, strict=True)
        ]
        return [*out, {"params": list(head.parameters()), "lr": self.lr, "name": "head"}]

    def group_rates(self, count: int) -> list[float]:
        return [self.lr] * count

    def trainable_groups(self, epoch: int, count: int) -> int:
        """How many backbone groups, counted from the top, train in this epoch."""
        return count

    def describe(self) -> dict:
        return {"name": self.name, "lr": self.lr, "lr_decay": self.lr_decay}


def get_strategy(name: str, **kwargs) -> Strategy:
    check_choice("strategy", name, [*STRATEGIES, "auto"])
    return STRATEGIES[name](**kwargs)


def set_trainable(backbone: Backbone, top_groups: int) -> None:
    """Freeze every group but the top `top_groups`; BatchNorm in frozen parts stays in eval mode."""
    groups = backbone.groups()
    cut = len(groups) - top_groups
    for index, group in enumerate(groups):
        for param in group.params:
            param.requires_grad_(index >= cut)
    freeze_frozen_batchnorm(backbone)


def freeze_frozen_batchnorm(module: nn.Module) -> None:
    """Put norms whose parameters are all frozen in eval mode, so their statistics stay fixed."""
    for sub in module.modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            params = list(sub.parameters())
            if params and not any(p.requires_grad for p in params):
                sub.eval()
