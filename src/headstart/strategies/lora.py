"""LoRA: low-rank adapters (PEFT) on a text encoder's attention; only they and the head train.

The pre-trained weights stay as they are. A run saves the adapter tensors and the head only (a
few hundred kB for MiniLM at r=8, against 90 MB for the full encoder); loading rebuilds the
pre-trained backbone, checks its weight hash, re-injects the adapters from the saved options and
loads their tensors. With merge=true (the default) the adapters are then folded into the weights
they adapt, so inference costs what the plain encoder costs, after fitting and after loading
alike.

    TextClassifier("minilm_l6", strategy="lora:r=8,alpha=16,dropout=0.1").fit(...)
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ..errors import HeadstartError
from ..zoo.backbone import Backbone, ParamGroup
from .base import Strategy

ADAPTER_PREFIX = "adapter."  # run weights: adapter.<encoder key> next to head.*
# query/value projections by name, per architecture family (the LoRA paper's choice)
QUERY_VALUE = (("query", "value"), ("q_proj", "v_proj"), ("q_lin", "v_lin"), ("q", "v"))


class LoRA(Strategy):
    name = "lora"
    summary = "low-rank adapters on the encoder's attention (query/value); adapters + head train"
    modalities = ("text",)
    head_first = True  # adapters start at zero: the probe head is the right starting point
    default_lr = 5e-4
    options: ClassVar[dict[str, type]] = {
        "r": int,
        "alpha": float,
        "dropout": float,
        "targets": str,
        "merge": bool,
    }
    aliases: ClassVar[dict[str, str]] = {"rank": "r", "target_modules": "targets"}
    example = "lora:r=8,alpha=16,dropout=0.1,targets=query+value,merge=true"

    def __init__(
        self,
        lr: float | None = None,
        lr_decay: float | None = None,
        *,
        r: int = 8,
        alpha: float = 16.0,
        dropout: float = 0.1,
        targets: str | list[str] = "auto",
        merge: bool = True,
    ):
        super().__init__(lr, lr_decay)
        if r < 1 or alpha <= 0 or not 0 <= dropout < 1:
            raise HeadstartError(
                f"LoRA needs r >= 1, alpha > 0 and 0 <= dropout < 1; got r={r}, alpha={alpha}, "
                f"dropout={dropout}."
            )
        self.r, self.alpha, self.dropout, self.merge = int(r), float(alpha), float(dropout), merge
        # "auto", "all" (every Linear in the transformer layers), "query+value" or a list
        if isinstance(targets, str) and "+" in targets:
            targets = targets.split("+")
        self.targets = targets
        self.resolved_targets: list[str] | None = None
        self.adapter_state_: dict[str, torch.Tensor] | None = None

    def describe(self) -> dict:
        return {
            **super().describe(),
            "r": self.r,
            "alpha": self.alpha,
            "dropout": self.dropout,
            "targets": self.resolved_targets or self.targets,
            "merge": self.merge,
            **self.fit_info(),
        }

    def fit_info(self) -> dict:
        if self.adapter_state_ is None:
            return {}
        tensors = self.adapter_state_.values()
        return {
            "adapter_params": sum(t.numel() for t in tensors),
            "adapter_bytes": sum(t.numel() * t.element_size() for t in tensors),
        }

    # -- the Strategy interface ------------------------------------------------------------

    def fit(self, backbone, head, task, train, val, cfg, *, progress=None):
        """Inject adapters, train them with the head on the engine; (backbone, head, history).
        `head`: the starting head (the probe), or None for a new one."""
        from ..engine.train import train as run_engine
        from ..zoo.entry import materialize
        from .base import _engine_progress, new_head

        backbone = materialize(backbone)
        check_text(backbone, self.name)
        if head is None:
            head = new_head(task, backbone.feature_dim, train.features, cfg.seed)
        torch.manual_seed(cfg.seed)  # the adapters' A matrices start random
        self.inject(backbone)
        view = AdapterView(backbone)
        for param in backbone.parameters():  # the pre-trained weights stay as they are
            param.requires_grad_(False)
        callbacks = [_engine_progress(progress)] if progress is not None else []
        history = run_engine(view, head, task, self, train, val, cfg, callbacks=callbacks)
        self.adapter_state_ = adapter_state(backbone.model)
        if self.merge:
            merge_adapters(backbone.model)
        for param in backbone.parameters():
            param.requires_grad_(False)
        return backbone.eval(), head, history

    def saved_tensors(self, backbone) -> dict[str, torch.Tensor]:
        """What a run saves of the tuned backbone: the adapter tensors only."""
        if self.adapter_state_ is None:
            raise HeadstartError("This LoRA strategy has not been fitted: no adapters to save.")
        state = self.adapter_state_
        return {ADAPTER_PREFIX + k: v.detach().cpu().contiguous() for k, v in state.items()}

    def trained_parameters(self, backbone) -> int:
        return sum(int(t.numel()) for t in self.saved_tensors(backbone).values())

    def restore_backbone(self, spec, tensors: dict[str, torch.Tensor]) -> Backbone:
        """The pre-trained backbone (hash checked) with the saved adapters, merged as at fit."""
        from ..zoo import load_backbone
        from ..zoo.entry import materialize

        saved, info = spec.strategy, spec.backbone
        self.r, self.alpha, self.dropout = int(saved["r"]), float(saved["alpha"]), saved["dropout"]
        self.targets, self.merge = list(saved["targets"]), bool(saved["merge"])
        self.lr, self.lr_decay = saved.get("lr", self.lr), saved.get("lr_decay")
        backbone = materialize(load_backbone(info.name, spec.modality, info.weights_file))
        expected = info.pretrained_weight_id
        if expected and backbone.weight_id != expected:
            raise HeadstartError(
                f"The pre-trained weights of {info.name!r} differ from those the LoRA adapters "
                f"were trained on (sha256 {backbone.weight_id[:12]}... vs {expected[:12]}...). "
                "Install the same weights, or re-run fit."
            )
        self.inject(backbone)
        adapters = {
            k.removeprefix(ADAPTER_PREFIX): v
            for k, v in tensors.items()
            if k.startswith(ADAPTER_PREFIX)
        }
        expected_keys = set(adapter_state(backbone.model))
        if set(adapters) != expected_keys:
            missing = sorted(expected_keys - set(adapters))
            extra = sorted(set(adapters) - expected_keys)
            raise HeadstartError(
                f"The saved LoRA adapters do not fit {info.name!r} with the saved options "
                f"({len(missing)} missing, {len(extra)} unexpected: "
                f"{', '.join((missing or extra)[:3])}). Re-run fit."
            )
        try:
            backbone.model.load_state_dict(adapters, strict=False)
        except RuntimeError as exc:  # shapes: the run's tensors and options disagree
            raise HeadstartError(
                f"The saved LoRA adapters do not fit the saved options (r={self.r}): "
                f"{str(exc).splitlines()[-1].strip()} Re-run fit."
            ) from None
        self.adapter_state_ = adapter_state(backbone.model)
        if self.merge:
            merge_adapters(backbone.model)
        for param in backbone.parameters():
            param.requires_grad_(False)
        backbone.weight_id = info.weight_id
        return backbone.eval()

    # -- adapters ---------------------------------------------------------------------------

    def inject(self, backbone: Backbone) -> None:
        from peft import LoraConfig, inject_adapter_in_model

        targets = self.resolved_targets = target_modules(backbone.model, self.targets)
        config = LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=targets,
            bias="none",
        )
        inject_adapter_in_model(config, backbone.model)


class AdapterView(Backbone):
    """The backbone as the engine sees it under LoRA: one parameter group, the adapters."""

    def __init__(self, inner: Backbone):
        super().__init__(inner.name, inner.cfg, inner.weight_id)
        self.modality = inner.modality
        self.inner = inner

    def tokenize(self, texts):
        return self.inner.tokenize(texts)

    def forward_features(self, batch):
        return self.inner.forward_features(batch)

    def pool(self, features, batch):
        return self.inner.pool(features, batch)

    def forward_intermediates(self, batch):
        # one group (the adapters, spread over the layers): its output is the encoder's output
        return [self.forward_features(batch)]

    def pool_intermediate(self, tensor, batch):
        return self.inner.pool_intermediate(tensor, batch)

    def groups(self) -> list[ParamGroup]:
        group = ParamGroup("lora")
        for name, param in self.inner.named_parameters():
            if "lora_" in name:
                group.params.append(param)
                group.modules.append(name)
        return [group]


def check_text(backbone: Backbone, strategy: str) -> None:
    # adapters go into a transformer's attention: a tokenising backbone with an inner model
    inner = getattr(backbone, "model", None)
    if not hasattr(backbone, "tokenize") or not isinstance(inner, nn.Module):
        raise HeadstartError(
            f"Strategy {strategy!r} needs a text transformer backbone; {backbone.name!r} is "
            f"{backbone.modality or 'not one'}. {strategy} applies to text transformers; for "
            "images use freeze-unfreeze."
        )


def target_modules(model: nn.Module, targets) -> list[str]:
    """Module names for LoRA. auto: the attention query/value projections when named so (BERT
    "query"/"value", "q_proj"/"v_proj", ...), else every Linear in the transformer layers."""
    linear = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if isinstance(targets, list | tuple):
        chosen = list(targets)
        unmatched = [t for t in chosen if not any(n == t or n.endswith(f".{t}") for n in linear)]
        if unmatched:
            leaves = sorted({n.rsplit(".", 1)[-1] for n in linear})
            raise HeadstartError(
                f"LoRA targets {unmatched} match no Linear layer of the encoder; its Linear "
                f"layers are named {', '.join(leaves)}."
            )
        return chosen
    if targets == "auto":
        leaves = {n.rsplit(".", 1)[-1] for n in linear}
        for pair in QUERY_VALUE:
            if all(p in leaves for p in pair):
                return list(pair)
    if targets not in ("auto", "all"):
        return target_modules(model, [targets])
    stack = max(
        (n for n, m in model.named_modules() if isinstance(m, nn.ModuleList)),
        key=lambda n: len(model.get_submodule(n)),
        default=None,
    )
    inside = [n for n in linear if stack is not None and n.startswith(f"{stack}.")]
    if not inside:
        raise HeadstartError("The encoder has no Linear layers in its transformer layers for LoRA.")
    return inside


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}


def merge_adapters(model: nn.Module) -> None:
    """Fold every adapter into the weight it adapts and put the plain layer back (merge and
    unload, in place, on a model that has no PeftModel wrapper)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.get_base_layer())
    if "peft_config" in vars(model):
        del model.peft_config
