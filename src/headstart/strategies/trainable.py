"""Strategies that train (part of) the backbone, on the Lightning engine."""

from __future__ import annotations

import torch

from ..errors import HeadstartError
from .base import Strategy


class FineTune(Strategy):
    name = "fine-tune"
    summary = "start from the pre-trained weights and train every layer (weight initialisation)"
    default_lr = 2e-4


class FreezeUnfreeze(Strategy):
    """Head first on the frozen backbone (fitted exactly on cached features, in seconds), then all
    layers with learning rates spread across groups, smallest at the input (fastai's fine_tune)."""

    name = "freeze-unfreeze"
    summary = "head first on frozen features, then all layers, smaller rates near the input"
    head_first = True
    default_lr = 1e-4
    spread = 100.0  # the input group trains at lr / spread
    options = {"groups": int}  # train only the top N groups (what `rank --layers` recommends)
    example = "freeze-unfreeze:groups=2"

    def __init__(self, lr=None, lr_decay=None, groups: int | None = None):
        super().__init__(lr, lr_decay)
        if groups is not None and groups < 1:
            raise HeadstartError(f"Strategy option groups must be at least 1; got {groups}.")
        self.groups = groups

    def trainable_groups(self, epoch: int, count: int) -> int:
        return min(count, self.groups or count)

    def describe(self) -> dict:
        return {**super().describe(), "groups": self.groups}

    def group_rates(self, count: int) -> list[float]:
        if self.lr_decay:  # layer-wise decay: lr * decay ** (distance from the top)
            return [self.lr * self.lr_decay ** (count - 1 - i) for i in range(count)]
        if count == 1:
            return [self.lr]
        return [self.lr / self.spread ** ((count - 1 - i) / (count - 1)) for i in range(count)]


class Gradual(FreezeUnfreeze):
    """ULMFiT's gradual unfreezing: one more parameter group per epoch, from the top."""

    name = "gradual"
    summary = "unfreeze one parameter group per epoch from the top (ULMFiT)"

    def trainable_groups(self, epoch: int, count: int) -> int:
        return min(count, epoch + 1, self.groups or count)


class FromScratch(Strategy):
    name = "from-scratch"
    summary = "the same architecture from random weights, same budget: the control"
    pretrained = False
    needs_probe = False  # nothing pre-trained is read: no cached features, no probe
    keep_norm_statistics = False  # random statistics are worth nothing: learn them
    default_lr = 1e-3

    def build(self, model: str, modality: str, weights=None, seed: int = 0, preprocess=None):
        """The architecture with random weights (the seed fixes them); its weight file is never
        opened."""
        from ..zoo.registry import entry_for, with_preprocess

        entry = with_preprocess(entry_for(model, modality), preprocess)
        torch.manual_seed(seed)  # the random init is part of what the seed fixes
        return entry.build(pretrained=False)
