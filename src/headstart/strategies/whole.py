"""Strategies for whole models (detectors, segmenters): which parameter groups train, when, and
at which learning rate.

A model's groups run input to output, the pre-trained backbone first and its last `head_groups`
(a detector's neck and head, a segmenter's decoder) last. The strategies are the classification
ones carried over:
- head-only: the backbone stays as pre-trained (feature extraction); the neck and head (or the
  decoder) learn;
- freeze-unfreeze: head-only for the first part of training, then everything, the backbone at a
  tenth of the head's rate (fastai's fine_tune);
- fine-tune: everything from the start, the backbone at a tenth of the head's rate;
- from-scratch: the same architecture from random weights, every group at the full rate (the
  control that shows what pre-training bought).
"""

from __future__ import annotations

from typing import ClassVar

from ..errors import HeadstartError, did_you_mean

BACKBONE_RATE = 0.1  # the pre-trained groups' learning rate relative to the head's


class WholeModelStrategy:
    name: ClassVar[str] = ""
    pretrained: ClassVar[bool] = True
    summary: ClassVar[str] = ""

    def rates(self, groups: int, head_groups: int, progress: float) -> list[float]:
        """Learning-rate multiplier per group at `progress` (0..1 of training); 0: frozen."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name, "summary": self.summary}

    def saved_files(self, folder) -> dict[str, str]:
        """Files a run holds besides the weights and config: none (save_run asks every
        strategy)."""
        return {}


class HeadOnly(WholeModelStrategy):
    name = "head-only"
    summary = "backbone frozen as pre-trained; neck and detection head trained"

    def rates(self, groups, head_groups, progress):
        return [0.0] * (groups - head_groups) + [1.0] * head_groups


class FineTune(WholeModelStrategy):
    name = "fine-tune"
    summary = "every layer trained, the pre-trained backbone at a tenth of the head's rate"

    def rates(self, groups, head_groups, progress):
        return [BACKBONE_RATE] * (groups - head_groups) + [1.0] * head_groups


class FreezeUnfreeze(WholeModelStrategy):
    name = "freeze-unfreeze"
    summary = "head only for the first fifth of training, then every layer (backbone at 0.1x)"
    frozen_part: ClassVar[float] = 0.2

    def rates(self, groups, head_groups, progress):
        if progress < self.frozen_part:
            return HeadOnly().rates(groups, head_groups, progress)
        return FineTune().rates(groups, head_groups, progress)


class FromScratch(WholeModelStrategy):
    name = "from-scratch"
    pretrained = False
    summary = "the same architecture from random weights (the control)"

    def rates(self, groups, head_groups, progress):
        return [1.0] * groups


WHOLE_MODEL_STRATEGIES: dict[str, type[WholeModelStrategy]] = {
    cls.name: cls for cls in (HeadOnly, FreezeUnfreeze, FineTune, FromScratch)
}
ALIASES = {
    "frozen": "head-only",
    "decoder-only": "head-only",
    "linear-probe": "head-only",
    "mlp-head": "head-only",
}
# Chosen by `auto`, per route: the best of the measured strategies on bench/detect.py's raccoon
# runs (test mAP@0.5; README). YOLOX-Nano, 5 minutes each: head-only 0.886, freeze-unfreeze
# 0.870, fine-tune 0.868 (its COCO backbone already sees objects, and frozen it trains more
# epochs in the time). FCOS on an ImageNet backbone: fine-tune 0.920 in 20 minutes.
AUTO = {
    "yolox": (
        "head-only",
        "best of the strategies measured on the COCO detector (bench/detect.py)",
    ),
    "fcos": ("fine-tune", "the ImageNet backbone must learn to localise (bench/detect.py)"),
    "unet": ("fine-tune", "the encoder adapts to the images' texture (bench/segment.py)"),
}


def get_whole_model_strategy(
    name: str, route: str, task: str = "detection"
) -> tuple[WholeModelStrategy, str]:
    """(strategy, reason it was chosen); 'auto' picks the route's measured best."""
    if name == "auto":
        chosen, reason = AUTO[route]
        return WHOLE_MODEL_STRATEGIES[chosen](), f"auto: {reason}"
    key = ALIASES.get(name, name)
    if key not in WHOLE_MODEL_STRATEGIES:
        known = ", ".join(["auto", *WHOLE_MODEL_STRATEGIES])
        raise HeadstartError(
            f"Strategy {name!r} does not apply to {task}."
            f"{did_you_mean(name, list(WHOLE_MODEL_STRATEGIES))} "
            f"Strategies for {task}: {known}."
        )
    return WHOLE_MODEL_STRATEGIES[key](), ""
