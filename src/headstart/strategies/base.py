"""The Strategy interface and its registry.

A strategy decides how a model is fitted for the user's task, and how its trained part is saved
and restored. Every strategy implements the same methods; the estimator, `runs/` and `compare`
call them and probe for nothing.

What it needs (plain class attributes, every strategy has them):
  needs_backbone  False: a featuriser stands in for the backbone (tfidf, pixels)
  pretrained      False: the backbone starts from random weights, nothing pre-trained is read
  needs_probe     fit a linear probe on the pre-trained backbone's cached features first (the
                  report's evidence, `auto`'s, and the start of a head-first strategy)
  head_first      fit() starts from that probe: the estimator passes it as `head`
  frozen          the backbone is never changed: the features the model reads are the cached ones
  keep_norm_statistics  BatchNorm keeps its pre-trained statistics while the backbone trains
  modalities      the modalities it applies to
  tasks           the task names it applies to; None: every registered task (task_hint: said
                  when used with another). `refusal(spec, modality, task)` reads both, before
                  any work, and says in one line why a combination cannot run and what can.

What it does:
  build(model, modality, weights=None, seed=0) -> Backbone | None
      what it works on, through the zoo: the pre-trained backbone (lazy), a random-init copy
      (from-scratch), or None where its featuriser is the whole input side
  fit(backbone, head, task, train, val, cfg, *, progress=None) -> (backbone, head, history)
      train / val: engine.train.TrainData (items, targets, features: the cached pre-trained
      features or None); head: the starting head (the probe for head_first) or None to build
      one; cfg: engine.train.TrainConfig; progress(done, total): optional progress callback.
      The default trains on the Lightning engine (engine.train.train); frozen strategies fit a
      head on the features, lora and contrastive run their own loops, featurisers fit
      themselves and a linear model. Never given the estimator.
  features(backbone, source, extract) -> Embeddings
      the rows the fitted model reads: `extract(backbone, source)` (the estimator's extractor)
      by default, the featuriser's rows for featuriser strategies
  logits(head, features) -> torch.Tensor         the head applied to those rows
  trainable_groups(epoch, count), optimizer_groups(backbone, head), group_rates(count)
      what trains in an epoch and at which rate (the engine's questions)
  saved_tensors(backbone) -> {name: tensor}      what of the backbone side a run saves besides
      head.*: backbone.* when it trained, adapter.* for lora, featuriser.* for featurisers
  saved_files(folder) -> {file name: sha256}     extra files (tfidf.json, pixels.json)
  restore(spec, tensors, folder) -> (backbone, head)   the inverse of the two above
  trained_parameters(backbone) -> int            numbers of the backbone side the fit changed
  describe(), fit_info()                         for config.json and fit_info_
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import HeadstartError, check_choice, did_you_mean
from ..zoo.backbone import Backbone

if TYPE_CHECKING:
    from ..data.sources import Source
    from ..engine.train import TrainConfig, TrainData
    from ..features.extract import Embeddings
    from ..heads import Head, Task
    from ..runs.spec import RunSpec

STRATEGIES: dict[str, type[Strategy]] = {}
BACKBONE_PREFIX = "backbone."
Progress = Callable[[int, int], None]  # (steps done, steps in all)
Extract = Callable[[Any, "Source"], "Embeddings"]


class Strategy:
    name: ClassVar[str] = ""
    needs_backbone: ClassVar[bool] = True
    pretrained: ClassVar[bool] = True
    needs_probe: ClassVar[bool] = True
    head_first: ClassVar[bool] = False
    frozen: ClassVar[bool] = False
    # BatchNorm keeps its pre-trained statistics while the backbone trains (Keras' fine-tuning
    # advice): small batches of a shifted domain would replace them with noisy, different ones
    # and throw the head off (EfficientNet on 8x8 digits fell to chance within one epoch).
    keep_norm_statistics: ClassVar[bool] = True
    summary: ClassVar[str] = ""
    modalities: ClassVar[tuple[str, ...]] = ("image", "text", "audio")  # backbones it applies to
    tasks: ClassVar[tuple[str, ...] | None] = None  # task names it applies to; None: all
    task_hint: ClassVar[str] = ""  # why, said when used with another task
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

    # -- what it works on --------------------------------------------------------------------

    def build(
        self, model: str, modality: str, weights=None, seed: int = 0, preprocess=None
    ) -> Backbone | None:
        """The pre-trained backbone, lazy: nothing is built until it is used. `preprocess`:
        changes to its preprocessing settings."""
        from ..zoo import load_backbone

        return load_backbone(model, modality, weights, preprocess)

    # -- fitting -----------------------------------------------------------------------------

    def fit(
        self,
        backbone: Backbone,
        head: Head | None,
        task: Task,
        train: TrainData,
        val: TrainData | None,
        cfg: TrainConfig,
        *,
        progress: Progress | None = None,
    ) -> tuple[Backbone, nn.Module, list[dict]]:
        """Train backbone and head on the Lightning engine; (backbone, head, history)."""
        from ..engine.train import train as run_engine
        from ..zoo.entry import materialize

        backbone = materialize(backbone)
        if head is None:
            head = new_head(task, backbone.feature_dim, train.features, cfg.seed)
        callbacks = [_engine_progress(progress)] if progress is not None else []
        history = run_engine(backbone, head, task, self, train, val, cfg, callbacks=callbacks)
        return backbone, head, history

    def estimate_seconds(self, costs, targets, n_val: int, epochs: int) -> float | None:
        """This strategy's training time on this machine from measured costs (auto/cost.py);
        None where it cannot say. Strategies trained by epochs: every batch of every epoch."""
        if self.frozen:
            return 0.0
        return costs.epochs(len(targets), n_val, epochs)

    def features(self, backbone, source: Source, extract: Extract) -> Embeddings:
        """The rows the fitted model reads for `source`: the backbone's, through `extract`."""
        return extract(backbone, source)

    def logits(self, head: nn.Module, features) -> torch.Tensor:
        return head(torch.from_numpy(np.asarray(features)))

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

    # -- saving and restoring ----------------------------------------------------------------

    def saved_tensors(self, backbone) -> dict[str, torch.Tensor]:
        """backbone.* for a trained backbone; nothing for a frozen one (its file is the zoo's)."""
        if self.frozen:
            return {}
        return {
            BACKBONE_PREFIX + k: v.detach().cpu().contiguous()
            for k, v in backbone.state_dict().items()
        }

    def saved_files(self, folder: Path) -> dict[str, str]:
        """Files a run holds besides model.safetensors and config.json: {name: sha256}."""
        return {}

    def restore(
        self, spec: RunSpec, tensors: dict[str, torch.Tensor], folder: Path | None = None
    ) -> tuple[Backbone | None, nn.Module]:
        """(backbone, head) of a saved run: the inverse of saved_tensors and saved_files."""
        return self.restore_backbone(spec, tensors), restore_head(spec, tensors)

    def restore_backbone(self, spec: RunSpec, tensors: dict[str, torch.Tensor]) -> Backbone:
        from ..zoo import get_entry, load_backbone
        from ..zoo.registry import with_preprocess

        info = spec.backbone
        if not self.frozen:  # the weights are all in the run: no need for the original file
            entry = with_preprocess(get_entry(info.name), saved_changes(spec))
            backbone = entry.build(pretrained=False)
            state = {
                k.removeprefix(BACKBONE_PREFIX): v
                for k, v in tensors.items()
                if k.startswith(BACKBONE_PREFIX)
            }
            backbone.load_state_dict(state, strict=True)
            backbone.weight_id = info.weight_id
            return backbone
        changes = saved_changes(spec)
        backbone = load_backbone(info.name, spec.modality, info.weights_file, changes)  # lazy
        if backbone.weight_id != info.weight_id:
            raise HeadstartError(
                f"The backbone weights for {info.name!r} differ from those the run was fitted "
                f"with (sha256 {backbone.weight_id[:12]}... vs {info.weight_id[:12]}...). "
                "Install the same weights, or re-run fit."
            )
        return backbone

    def trained_parameters(self, backbone) -> int:
        """Numbers of the backbone side that the fit changed (0 for a frozen backbone)."""
        return 0 if self.frozen else sum(int(p.numel()) for p in backbone.parameters())

    # -- reporting ---------------------------------------------------------------------------

    def describe(self) -> dict:
        return {"name": self.name, "lr": self.lr, "lr_decay": self.lr_decay}

    def fit_info(self) -> dict:
        """What the last fit measured beyond the history (added to the estimator's fit_info_)."""
        return {}


def new_head(task: Task, feature_dim: int, features: np.ndarray | None, seed: int) -> Head:
    """A fresh head for the task, seeded; its input normaliser fitted where features are given."""
    torch.manual_seed(seed)
    head = task.build_head(feature_dim)
    if features is not None:
        head.fit_normaliser(torch.from_numpy(features))
    return head


def restore_head(spec: RunSpec, tensors: dict[str, torch.Tensor]) -> nn.Module:
    from ..heads import build_head

    head = build_head(spec.head)
    head.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
    return head.eval()


def _engine_progress(progress: Progress):
    """A Lightning callback that reports optimiser steps to `progress(done, total)`."""
    from lightning.pytorch.callbacks import Callback

    class Report(Callback):
        def on_train_batch_end(self, trainer, *args):
            progress(int(trainer.global_step), int(trainer.estimated_stepping_batches))

    return Report()


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


def saved_changes(spec) -> dict:
    """The preprocessing settings a run was fitted with that differ from its backbone's."""
    from ..zoo import get_entry
    from ..zoo.registry import preprocess_changes

    return preprocess_changes(get_entry(spec.backbone.name), spec.preprocess)


def refusal(spec: str, modality: str, task: str = "auto") -> str | None:
    """Why strategy `spec` cannot apply to this modality and task, in one line that names what
    can; None where it can. An empty modality, or the task "auto" (not yet known), is not
    checked. An unknown strategy or option raises HeadstartError (see parse_strategy)."""
    name, _ = parse_strategy(spec)
    cls = STRATEGIES.get(name)  # None for "auto": it picks an applicable strategy itself
    if cls is None:
        return None
    if not _takes_modality(cls, modality):
        from ..modalities import get_modality

        kind = get_modality(modality)
        return (
            f"Strategy {name!r} applies to {'/'.join(cls.modalities)} backbones, not "
            f"{modality}. For {kind.plural} use one of: {', '.join(applicable(modality, 'auto'))} "
            f"(the no-transfer control: {kind.control_strategy})."
        )
    if not _takes_task(cls, task):
        hint = f" ({cls.task_hint})" if cls.task_hint else ""
        where = f"{modality} {task}" if modality else task
        return (
            f"Strategy {name!r} applies to {'/'.join(cls.tasks)} tasks, not {task}{hint}. "
            f"For {where} use one of: {', '.join(applicable(modality, task))}."
        )
    return None


def applicable(modality: str, task: str) -> list[str]:
    """The registered strategies that apply to this modality and task, in registration order."""
    return [
        name
        for name, cls in STRATEGIES.items()
        if _takes_modality(cls, modality) and _takes_task(cls, task)
    ]


def _takes_modality(cls: type[Strategy], modality: str) -> bool:
    return not modality or modality in cls.modalities


def _takes_task(cls: type[Strategy], task: str) -> bool:
    return not task or task == "auto" or cls.tasks is None or task in cls.tasks


def check_strategy(spec: str, modality: str, owner: str = "", task: str = "auto") -> None:
    """Fail before any work when the strategy (or one of its options) cannot apply to this
    modality and task (see refusal)."""
    parse_strategy(spec, owner)  # an unknown name or option, said with its owner
    reason = refusal(spec, modality, task)
    if reason is not None:
        raise HeadstartError(reason)


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
