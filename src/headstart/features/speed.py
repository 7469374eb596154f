"""Inference-only speed-ups for frozen backbones: precision choice, BatchNorm folding."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import check_choice

PRECISIONS = ("auto", "fp32", "bf16")


def cpu_has_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    check_choice("precision", precision, PRECISIONS)
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_bf16() else "fp32"


def resolve_device(device: str = "auto") -> torch.device:
    check_choice("device", device.split(":")[0], ("auto", "cpu", "cuda"))
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold each eval-mode BatchNorm into the convolution just before it (a copy; exact in fp32).

    Pairs are a Conv2d child registered immediately before a BatchNorm2d child, which is how
    timm's CNNs are built. The caller checks the folded copy against the original.
    """
    model = copy.deepcopy(model).eval()
    for parent in model.modules():
        children = list(parent.named_children())
        for (_, conv), (bn_name, bn) in zip(children, children[1:], strict=False):
            if isinstance(conv, nn.Conv2d) and type(bn) is not nn.Identity and _is_bn(bn):
                _fold_pair(conv, bn)
                setattr(parent, bn_name, _after_bn(bn))
    return model


def _is_bn(module: nn.Module) -> bool:
    return isinstance(module, nn.BatchNorm2d) and module.track_running_stats and module.affine


@torch.no_grad()
def _fold_pair(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)


def _after_bn(bn: nn.Module) -> nn.Module:
    # timm's BatchNormAct2d applies drop + act after the norm: keep those, drop the norm.
    tail = [m for m in (getattr(bn, "drop", None), getattr(bn, "act", None)) if m is not None]
    return nn.Sequential(*tail) if tail else nn.Identity()


def optimise_for_inference(module: nn.Module, example: torch.Tensor, precision: str) -> nn.Module:
    """Folded, channels-last copy in the chosen precision (unfolded if folding changes outputs)."""
    module = module.eval()
    folded = fold_batchnorm(module)
    with torch.inference_mode():
        same = torch.allclose(module(example), folded(example), atol=1e-3, rtol=1e-3)
    fast = folded if same else copy.deepcopy(module)
    fast = fast.to(memory_format=torch.channels_last)
    return fast.to(torch.bfloat16) if precision == "bf16" else fast
