"""Devices and precisions, and inference-only speed-ups for frozen backbones (BatchNorm folding).

The one list of devices and of precisions lives here. Choosing them ("auto") imports no torch
where the answer is known without it (no GPU visible to the OS; CPU flags in /proc/cpuinfo), so
a run whose embeddings are all cached never imports torch.
"""

from __future__ import annotations

import copy
import functools
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import check_choice

if TYPE_CHECKING:
    import torch
    from torch import nn

PRECISIONS = ("fp32", "bf16")  # what a network computes in
PRECISION_CHOICES = ("auto", *PRECISIONS)  # what a user may ask for: auto picks per hardware
DEVICES = ("auto", "cpu", "cuda")  # "cuda:N" is accepted too
GPU_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")  # CUDA, ROCm, WSL


def choices_text(choices: tuple[str, ...]) -> str:
    """'auto, fp32 or bf16': a choice list for help texts."""
    return ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]


@functools.cache
def cpu_has_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX512-BF16 or AMX on x86, BF16 on Arm);
    elsewhere bf16 is emulated and slower. Read from /proc/cpuinfo on Linux, else asked of torch."""
    flags = _linux_cpu_flags()
    if flags is not None:
        return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _linux_cpu_flags() -> set[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86, Arm
            return set(value.split())
    return None


def resolve_precision(precision: str, device: torch.device | str) -> str:
    check_choice("precision", precision, PRECISION_CHOICES)
    if precision != "auto":
        return precision
    if str(device).startswith("cuda"):
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_bf16() else "fp32"


def resolve_device_name(device: str = "auto") -> str:
    """'cpu', 'cuda' or 'cuda:N'; 'auto' is cuda where torch sees a GPU."""
    check_choice("device", device.split(":")[0], DEVICES)
    if device != "auto":
        return device
    if not gpu_possible():
        return "cpu"  # known without importing torch
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str = "auto") -> torch.device:
    import torch

    return torch.device(resolve_device_name(device))


def gpu_possible() -> bool:
    """False where torch certainly sees no GPU: macOS, a GPU-less Linux, CUDA_VISIBLE_DEVICES=''."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "" or sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux"):
        return any(os.path.exists(node) for node in GPU_NODES)
    return True


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold each eval-mode BatchNorm into the convolution just before it (a copy; exact in fp32).

    Pairs are a Conv2d child registered immediately before a BatchNorm2d child, which is how
    timm's CNNs are built. The caller checks the folded copy against the original.
    """
    from torch import nn

    model = copy.deepcopy(model).eval()
    for parent in model.modules():
        children = list(parent.named_children())
        for (_, conv), (bn_name, bn) in zip(children, children[1:], strict=False):
            if isinstance(conv, nn.Conv2d) and type(bn) is not nn.Identity and _is_bn(bn):
                _fold_pair(conv, bn)
                setattr(parent, bn_name, _after_bn(bn))
    return model


def _is_bn(module: nn.Module) -> bool:
    from torch import nn

    return isinstance(module, nn.BatchNorm2d) and module.track_running_stats and module.affine


def _fold_pair(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    import torch
    from torch import nn

    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)


def _after_bn(bn: nn.Module) -> nn.Module:
    # timm's BatchNormAct2d applies drop + act after the norm: keep those, drop the norm.
    from torch import nn

    tail = [m for m in (getattr(bn, "drop", None), getattr(bn, "act", None)) if m is not None]
    return nn.Sequential(*tail) if tail else nn.Identity()


def optimise_for_inference(module: nn.Module, example: torch.Tensor, precision: str) -> nn.Module:
    """Folded, channels-last copy in the chosen precision (unfolded if folding changes outputs)."""
    import torch

    module = module.eval()
    folded = fold_batchnorm(module)
    with torch.inference_mode():
        same = torch.allclose(module(example), folded(example), atol=1e-3, rtol=1e-3)
    fast = folded if same else copy.deepcopy(module)
    fast = fast.to(memory_format=torch.channels_last)
    return fast.to(torch.bfloat16) if precision == "bf16" else fast
