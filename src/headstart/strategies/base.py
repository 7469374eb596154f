"""The Strategy interface and its registry."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from ..errors import HeadstartError, check_choice, did_you_mean
from ..zoo.backbone import Backbone

STRATEGIES: dict[str, type[Strategy]] = {}


class Strategy:
    name: ClassVar[str] = ""
    frozen: ClassVar[bool] = False  # True: the head is fitted on cached features only
    pretrained: ClassVar[bool] = True  # False: the backbone starts from random weights
    head_first: ClassVar[bool] = False  # fit the head on cached features before training
    # BatchNorm keeps its pre-trained statistics while the backbone trains (Keras' fine-tuning
    # advice): small batches of a shifted domain would replace them with noisy, different ones
    # and throw the head off (EfficientNet on 8x8 digits fell to chance within one epoch).
    keep_norm_statistics: ClassVar[bool] = True
    classic: ClassVar[bool] = False  # its own features and model, no backbone (tfidf)
    summary: ClassVar[str] = ""
    modalities: ClassVar[tuple[str, ...]] = ("image", "text")  # backbones it applies to
    modality_hint: ClassVar[str] = ""  # said when used with another modality
    # options given as "name:key=value,...": {key: type}; aliases map other spellings to keys
    options: ClassVar[dict[str, type]] = {}
    aliases: ClassVar[dict[str, str]] = {}
    example: ClassVar[str] = ""  # an options example for error messages

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
        if self.lr_decay:  # layer-wise decay: lr * decay ** (distance from the top group)
            return [self.lr * self.lr_decay ** (count - 1 - i) for i in range(count)]
        return [self.lr] * count

    def trainable_groups(self, epoch: int, count: int) -> int:
        """How many backbone groups, counted from the top, train in this epoch."""
        return count

    def describe(self) -> dict:
        return {"name": self.name, "lr": self.lr, "lr_decay": self.lr_decay}

    def fit_info(self) -> dict:
        """What the last fit measured beyond the history (added to the estimator's fit_info_)."""
        return {}


def get_strategy(name: str, **kwargs) -> Strategy:
    """The strategy `name`, which may carry options: "lora:r=4,alpha=8" (see parse_strategy)."""
    name, options = parse_strategy(name)
    return STRATEGIES[name](**options, **kwargs)


def parse_strategy(spec: str, owner: str = "") -> tuple[str, dict]:
    """'name' or 'name:key=value,key=value' -> (name, {key: typed value}), checked."""
    name, _, rest = str(spec).partition(":")
    name = name.strip()
    check_choice("strategy", name, [*STRATEGIES, "auto"], owner)
    if not rest.strip():
        return name, {}
    cls = STRATEGIES.get(name)
    allowed = dict(cls.options) if cls else {}
    aliases = dict(cls.aliases) if cls else {}
    if not allowed:
        raise HeadstartError(f"Strategy {name!r} takes no options; got {spec!r}.")
    options = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = part.partition("=")
        key = aliases.get(key.strip(), key.strip())
        if not sep or key not in allowed:
            names = sorted({*allowed, *aliases})
            raise HeadstartError(
                f"Strategy option {part!r} of {name!r} is not one of key=value with key in "
                f"{{{', '.join(names)}}}.{did_you_mean(key, names)}"
                + (f" Example: {cls.example}" if cls.example else "")
            )
        options[key] = _convert(name, key, value.strip(), allowed[key])
    return name, options


def check_strategy(spec: str, modality: str, owner: str = "") -> None:
    """Fail before any work when the strategy (or one of its options) cannot apply."""
    name, _ = parse_strategy(spec, owner)
    cls = STRATEGIES.get(name)
    if cls is not None and modality and modality not in cls.modalities:
        hint = f" {cls.modality_hint}" if cls.modality_hint else ""
        raise HeadstartError(
            f"Strategy {name!r} applies to {'/'.join(cls.modalities)} backbones, not "
            f"{modality}.{hint}"
        )


_KINDS = {int: "a whole number", float: "a number", bool: "true or false"}


def _convert(name: str, key: str, value: str, kind: type):
    try:
        if kind is bool:
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("1", "true", "yes")
        return kind(value)
    except ValueError:
        raise HeadstartError(
            f"Strategy option {key}={value!r} of {name!r} must be "
            f"{_KINDS.get(kind, kind.__name__)}."
        ) from None


def set_trainable(backbone: Backbone, top_groups: int) -> None:
    """Freeze every group but the top `top_groups`; BatchNorm in frozen parts stays in eval mode."""
    groups = backbone.groups()
    cut = len(groups) - top_groups
    for index, group in enumerate(groups):
        for param in group.params:
            param.requires_grad_(index >= cut)
    freeze_frozen_batchnorm(backbone)


def freeze_frozen_batchnorm(module: nn.Module, every: bool = False) -> None:
    """Put norms whose parameters are all frozen (every=True: all norms) in eval mode, so their
    statistics stay fixed; their affine parameters still train where trainable."""
    for sub in module.modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            params = list(sub.parameters())
            if every or (params and not any(p.requires_grad for p in params)):
                sub.eval()
