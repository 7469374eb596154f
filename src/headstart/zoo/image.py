"""Image backbones on timm: bundled EfficientNet-Lite, the guide names, any timm:<arch>."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from timm.models import create_model, group_parameters
from torch import nn

from ..errors import HeadstartError
from .backbone import Backbone, ParamGroup
from .config import ImagePreprocess, PretrainedCfg
from .weights import load_state_dict


class TimmBackbone(Backbone):
    modality = "image"

    def __init__(self, name: str, cfg: PretrainedCfg, weight_id: str, model: nn.Module):
        super().__init__(name, cfg, weight_id)
        self.model = model
        # Where each group's output is taken, planned on the model as built: a BatchNorm-folded
        # copy has fewer parameters, but (deep-copied) it keeps this plan.
        self.taps = plan_taps(model, self.groups())

    def forward_features(self, batch: torch.Tensor) -> torch.Tensor:
        """timm's final feature map, unpooled: (B, C, H, W), or (B, N, D) for token models."""
        return self.model.forward_features(batch)

    def pool(self, features: torch.Tensor, batch=None) -> torch.Tensor:
        return self.model.forward_head(features, pre_logits=True)

    def forward_intermediates(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """The output of every group, input to output; the last is forward_features(batch)."""
        if isinstance(self.taps, TimmTaps):
            final, found = self.model.forward_intermediates(batch, **self.taps.kwargs)
            return [found[i] for i in self.taps.indices] + [final]
        return _hooked(self.model, self.taps, batch)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        head = self.model.get_classifier()
        if not isinstance(head, nn.Module) or not self.head_parameters():
            raise NotImplementedError(f"{self.name} has no source-task head.")
        return head(features)

    def head_parameters(self) -> list[nn.Parameter]:
        head = self.model.get_classifier()
        return list(head.parameters()) if isinstance(head, nn.Module) else []

    def reset_head(self) -> None:
        self.model.reset_classifier(0)

    def groups(self) -> list[ParamGroup]:
        head_ids = {id(p) for p in self.head_parameters()}
        named = dict(self.model.named_parameters())
        grouped = group_parameters(self.model, self.model.group_matcher(coarse=True))
        out = []
        for index, names in grouped.items():
            params = [named[n] for n in names if id(named[n]) not in head_ids]
            if params:
                first = names[0].split(".")
                label = ".".join(first[:2]) if first[0] == "blocks" else first[0]
                out.append(ParamGroup(f"{index}:{label}", params, sorted(names)))
        return out


# ---- where each group's output is taken --------------------------------------------------------


@dataclass(frozen=True)
class TimmTaps:
    """Group i's output is timm's forward_intermediates(x, **kwargs)[1][indices[i]]."""

    indices: tuple[int, ...]
    kwargs: dict = field(default_factory=dict)


def plan_taps(model: nn.Module, groups: list[ParamGroup]) -> TimmTaps | list[str]:
    """How to read the output of every group but the last (whose output is forward_features).

    timm's own forward_intermediates where its taps line up with the groups, one for one (the
    EfficientNet family with extra_blocks: stem, then every stage of `blocks`; ResNet: act1, then
    layer1..4). Otherwise the output of one module per group, by name (see _output_module).
    """
    names = _timm_tap_names(model)
    if names is not None:
        kwargs = {"extra_blocks": True} if names[0] == "bn1" and _takes_extra_blocks(model) else {}
        span = _spans(model)
        lined_up = len(names) >= len(groups) - 1 and all(
            _ends_group(span, names[i], groups[i], groups[i + 1]) for i in range(len(groups) - 1)
        )
        if lined_up:
            return TimmTaps(tuple(range(len(groups) - 1)), kwargs)
    return [_output_module(model, group) for group in groups[:-1]]


def _takes_extra_blocks(model: nn.Module) -> bool:
    import inspect

    return "extra_blocks" in inspect.signature(model.forward_intermediates).parameters


def _timm_tap_names(model: nn.Module) -> list[str] | None:
    """The module each of timm's forward_intermediates outputs comes from, in order."""
    if not hasattr(model, "forward_intermediates"):
        return None
    if _takes_extra_blocks(model) and hasattr(model, "blocks") and hasattr(model, "bn1"):
        return ["bn1", *(f"blocks.{i}" for i in range(len(model.blocks)))]
    info = getattr(model, "feature_info", None)
    return [f["module"] for f in info] if info else None


def _spans(model: nn.Module) -> dict[str, tuple[int, int]]:
    """name -> (first, last) position in registration order of the module and its submodules;
    timm registers modules in the order the forward pass runs them."""
    order = [name for name, _ in model.named_modules()]
    last = {}
    for position, name in enumerate(order):
        parts = name.split(".") if name else []
        for depth in range(len(parts) + 1):
            last[".".join(parts[:depth])] = position
    return {name: (position, last[name]) for position, name in enumerate(order)}


def _owner_positions(span: dict, group: ParamGroup) -> list[int]:
    return [span[n.rsplit(".", 1)[0] if "." in n else ""][0] for n in group.modules]


def _ends_group(span: dict, module: str, group: ParamGroup, following: ParamGroup) -> bool:
    """True where `module` runs after every parameter of `group` and before `following`."""
    if module not in span:
        return False
    end = span[module][1]
    return max(_owner_positions(span, group)) <= end < min(_owner_positions(span, following))


def _output_module(model: nn.Module, group: ParamGroup) -> str:
    """The module whose output is the group's output: of the largest modules whose parameters all
    belong to the group (a block, a stage, the stem's conv and its norm), the one registered last,
    which in timm's models is the last to run."""
    inside = set(group.modules)
    whole = []
    for name, module in model.named_modules():
        params = [f"{name}.{p}" if name else p for p, _ in module.named_parameters()]
        if params and all(p in inside for p in params):
            whole.append(name)
    top = [n for n in whole if not any(n.startswith(f"{w}.") for w in whole if w != n)]
    if not top:
        raise HeadstartError(
            f"No module of {type(model).__name__} holds only parameters of group {group.name}; "
            "its layers cannot be cut. Rank the whole model instead (without --layers)."
        )
    span = _spans(model)
    return max(top, key=lambda n: span[n][1])


def _hooked(model: nn.Module, taps: list[str], batch: torch.Tensor) -> list[torch.Tensor]:
    """forward_features with the output of each tapped module kept. Modules are looked up by name
    on every call: a BatchNorm-folded copy replaces some, and its own must be the ones tapped."""
    modules = dict(model.named_modules())
    seen: dict[str, torch.Tensor] = {}

    def keep(name):
        def hook(_module, _inputs, output):
            seen[name] = output

        return hook

    handles = [modules[name].register_forward_hook(keep(name)) for name in set(taps)]
    try:
        final = model.forward_features(batch)
    finally:
        for handle in handles:
            handle.remove()
    return [seen[name] for name in taps] + [final]


def timm_preprocess(model: nn.Module) -> ImagePreprocess:
    cfg = model.pretrained_cfg
    interp = cfg.get("interpolation", "bicubic")
    return ImagePreprocess(
        input_size=int(cfg.get("input_size", (3, 224, 224))[-1]),
        mean=tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))),
        crop_pct=float(cfg.get("crop_pct", 0.875)),
        interpolation=interp if interp in ("bicubic", "bilinear") else "bicubic",
    )


def create_timm(arch: str, **kwargs) -> nn.Module:
    try:
        return create_model(arch, pretrained=False, **kwargs)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise HeadstartError(
                f"timm has no architecture {arch!r}. List them with "
                "`python -c \"import timm; print(timm.list_models('*name*'))\"`."
            ) from None
        raise


# EfficientNet-PyTorch's module order: top level, inside an MBConv block, inside a module.
_EP_TOP = ("_conv_stem", "_bn0", "_blocks", "_conv_head", "_bn1", "_fc")
_EP_BLOCK = (
    "_expand_conv",
    "_bn0",
    "_depthwise_conv",
    "_bn1",
    "_se_reduce",
    "_se_expand",
    "_project_conv",
    "_bn2",
)
_EP_TENSOR = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _efficientnet_pytorch_rank(key: str) -> tuple:
    """Sort key putting an EfficientNet-PyTorch state dict in its modules' order (unknowns last)."""

    def rank(options: tuple, value: str) -> int:
        return options.index(value) if value in options else len(options)

    parts = key.split(".")
    tensor = rank(_EP_TENSOR, parts[-1])
    if parts[0] == "_blocks" and len(parts) >= 4 and parts[1].isdigit():
        return (rank(_EP_TOP, "_blocks"), int(parts[1]), rank(_EP_BLOCK, parts[2]), tensor, key)
    return (rank(_EP_TOP, parts[0]), 0, 0, tensor, key)


def efficientnet_pytorch_to_timm(state: dict, model: nn.Module, path=None) -> dict:
    """Map an EfficientNet-PyTorch state dict (_conv_stem, _blocks.N, _fc) onto timm's tf_ variant.

    In module order the two correspond one to one. The source is put in module order by name
    first (a .safetensors file, for one, stores its tensors sorted alphabetically), and every
    shape is checked so that a wrong file fails loudly instead of loading shifted weights.
    """
    state = dict(sorted(state.items(), key=lambda item: _efficientnet_pytorch_rank(item[0])))
    target = model.state_dict()
    where = f"Weights file '{path}': " if path is not None else ""
    if len(state) != len(target):
        raise HeadstartError(
            f"{where}EfficientNet weights have {len(state)} tensors; {len(target)} expected for "
            f"{model.pretrained_cfg.get('architecture')}. Is this the right file for the model?"
        )
    mapped = {}
    for (src, tensor), (dst, ref) in zip(state.items(), target.items(), strict=True):
        if tensor.shape != ref.shape:
            raise HeadstartError(
                f"{where}EfficientNet weight {src} has shape {tuple(tensor.shape)}; {dst} in timm "
                f"expects {tuple(ref.shape)}. The file does not match the architecture."
            )
        mapped[dst] = tensor
    return mapped


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def timm_image_entry(name: str, arch: str, source, description: str = ""):
    """A ZooEntry for a timm architecture; the config is read off a weightless (meta) copy."""
    from .config import PretrainedCfg
    from .entry import ZooEntry

    with torch.device("meta"):
        model = create_timm(arch)
    cfg = PretrainedCfg(
        weights=source,
        preprocess=timm_preprocess(model),
        feature_dim=int(getattr(model, "head_hidden_size", None) or model.num_features),
        num_source_classes=int(getattr(model, "num_classes", 0) or 0),
    )
    return ZooEntry(name, "image", arch, cfg, build_timm, description, _num_params(model))


def timm_hub_source(arch: str, licence: str = "see the model card"):
    from .config import WeightSource

    with torch.device("meta"):
        model = create_timm(arch)
    hub_id = model.pretrained_cfg.get("hf_hub_id") or f"timm/{arch}"
    licence = model.pretrained_cfg.get("license", licence)
    return WeightSource("hub", f"{hub_id}:model.safetensors", None, licence)


def build_timm(entry, weights_file, pretrained: bool) -> TimmBackbone:
    from .entry import file_source, with_source

    path, weight_id = None, "random-init"
    if weights_file is not None:
        entry = with_source(entry, file_source(weights_file, entry.cfg.weights.licence))
    if weights_file is not None or pretrained:
        path, weight_id = resolve_weight_file(entry)  # before building: fail fast
    model = create_timm(entry.architecture)
    if path is not None:
        load_into(model, load_state_dict(path), path)
    model.eval()
    # eval() on the wrapper too: its own `training` flag must agree with the inner model's
    return TimmBackbone(entry.name, entry.cfg, weight_id, model).eval()


def resolve_weight_file(entry) -> tuple:
    """(path, sha256) of the entry's weights, fetching from the hub only where it is reachable."""
    from .entry import locate_weights, unreachable
    from .registry import bundled_names
    from .weights import hub_download, sha256_file

    source = entry.cfg.weights
    path = locate_weights(source)
    if path is None and source.kind == "hub":
        repo, _, filename = source.location.partition(":")
        path, why = hub_download(repo, filename or "model.safetensors")
        if path is None:
            raise unreachable(entry, why, bundled_names(entry.modality))
    if path is None:
        raise unreachable(entry, "not found on this machine", bundled_names(entry.modality))
    digest = sha256_file(path)
    if source.sha256 and digest != source.sha256:
        raise HeadstartError(
            f"Weights file '{path}' for {entry.name!r} has sha256 {digest[:12]}..., expected "
            f"{source.sha256[:12]}...: the file was altered or damaged. Reinstall its package."
        )
    return path, digest


def load_into(model: nn.Module, state: dict, path) -> None:
    """Load a state dict strictly, after known renamings; mismatches name the tensors."""
    if any(k.startswith("_conv_stem") for k in state):
        state = efficientnet_pytorch_to_timm(state, model, path)
    for prefix in ("module.", "model."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items()}
    target = model.state_dict()
    wrong = [k for k, v in state.items() if k in target and target[k].shape != v.shape]
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    if wrong or missing or unexpected:
        detail = "; ".join(
            f"{label}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''} ({len(names)})"
            for label, names in (
                ("wrong shape", wrong),
                ("missing", missing),
                ("unexpected", unexpected),
            )
            if names
        )
        raise HeadstartError(
            f"Weights file '{path}' does not fit {model.pretrained_cfg.get('architecture')}: "
            f"{detail}. Pass a file saved from the same architecture."
        )
    model.load_state_dict(state, strict=True)
