"""Segmenters: a U-Net decoder on a bundled ImageNet encoder, read through `forward_intermediates`.

The encoder's last map at each stride (2, 4, 8, 16, 32; a stride it lacks is left out) feeds a
decoder that doubles the resolution at each step, joining the encoder's map of that stride (the
U-Net skips), and ends at full resolution joined by a small convolution of the image itself, so
thin structures (cell membranes one or two pixels wide) keep their edges. The decoder starts from
random weights; the strategies (strategies/whole.py) decide what trains.

Input: float images (B, C, H, W) in [0, 1], C = 1 (grey: repeated into the encoder's three
channels, so its pre-trained filters apply) or 3, H and W multiples of 32. Output: class logits
(B, K, H, W).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import HeadstartError

STRIDES = (2, 4, 8, 16, 32)
WIDTHS = (128, 96, 64, 48, 32, 16)  # decoder channels from stride 32 up to stride 1
MULTIPLE = 32  # inputs' sides must be multiples of the deepest stride


def stride_taps(backbone, strides=STRIDES) -> dict[int, tuple[int, int]]:
    """{stride: (index into forward_intermediates, channels)}: the last map at each stride."""
    side = 128
    with torch.no_grad():
        maps = backbone.forward_intermediates(torch.zeros(1, 3, side, side))
    taps = {}
    for stride in strides:
        found = [i for i, m in enumerate(maps) if m.ndim == 4 and m.shape[-1] == side // stride]
        if found:
            taps[stride] = (found[-1], int(maps[found[-1]].shape[1]))
    if max(strides) not in taps:
        raise HeadstartError(
            f"Backbone {backbone.name!r} gives no feature map at stride {max(strides)}: a "
            "segmenter needs a convolutional image backbone (e.g. efficientnet_lite0)."
        )
    return taps


def _conv(in_ch: int, out_ch: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class _Up(nn.Module):
    """Double the resolution, join the skip (if any), two 3x3 convolutions."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int):
        super().__init__()
        self.convs = nn.Sequential(_conv(in_ch + skip_ch, out_ch), _conv(out_ch, out_ch))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.convs(torch.cat([x, skip], dim=1) if skip is not None else x)


class UNetDecoder(nn.Module):
    def __init__(self, channels: dict[int, int], num_classes: int, widths=WIDTHS):
        super().__init__()
        deepest = max(STRIDES)
        self.centre = _conv(channels[deepest], widths[0], kernel=1)
        self.stem = _conv(3, widths[-1])  # full-resolution features of the image itself
        ups = []
        for step, stride in enumerate(sorted(STRIDES, reverse=True)[1:] + [1]):
            skip = widths[-1] if stride == 1 else channels.get(stride, 0)
            ups.append(_Up(widths[step], skip, widths[step + 1]))
        self.ups = nn.ModuleList(ups)
        self.classify = nn.Conv2d(widths[-1], num_classes, 1)

    def forward(self, image: torch.Tensor, maps: dict[int, torch.Tensor]) -> torch.Tensor:
        x = self.centre(maps[max(STRIDES)])
        strides = sorted(STRIDES, reverse=True)[1:] + [1]
        for up, stride in zip(self.ups, strides, strict=True):
            x = up(x, self.stem(image) if stride == 1 else maps.get(stride))
        return self.classify(x)


class UNetSegmenter(nn.Module):
    """forward(images) -> logits; param_groups() input to output, the decoder last."""

    route = "unet"
    head_groups = 1  # the decoder starts from random weights

    def __init__(self, backbone, num_classes: int, widths=WIDTHS):
        super().__init__()
        self.backbone = backbone
        taps = stride_taps(backbone)
        self.taps = {stride: index for stride, (index, _) in taps.items()}
        self.decoder = UNetDecoder({s: c for s, (_, c) in taps.items()}, num_classes, widths)
        self.num_classes, self.widths = num_classes, tuple(widths)
        mean, std = backbone.preprocess.mean, backbone.preprocess.std
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _check_sides(images)
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        normalised = (images - self.mean) / self.std
        maps = self.backbone.forward_intermediates(normalised)
        found = {stride: maps[index] for stride, index in self.taps.items()}
        return self.decoder(normalised, found)

    @property
    def pretrained_part(self) -> nn.Module:
        """What keeps its pre-trained BatchNorm statistics while training: the encoder."""
        return self.backbone

    def param_groups(self) -> list[tuple[str, list[nn.Parameter]]]:
        groups = [(g.name, list(g.params)) for g in self.backbone.groups()]
        groups.append(("decoder", list(self.decoder.parameters())))
        return groups

    def default_lr(self, pretrained: bool) -> float:
        """AdamW's peak rate for the decoder (the strategy scales the encoder's)."""
        return 2e-3

    def spec(self) -> dict:
        return {"route": self.route, "widths": list(self.widths)}


def _check_sides(images: torch.Tensor) -> None:
    h, w = images.shape[-2:]
    if h % MULTIPLE or w % MULTIPLE:
        raise HeadstartError(
            f"A segmenter takes sides that are multiples of {MULTIPLE}; got {h}x{w} (pad first)."
        )


def build_segmenter(spec: dict, num_classes: int, pretrained: bool = True, weights=None):
    """The segmenter a spec describes: {"model": backbone name, "widths": [...]}."""
    from ..modalities import get_modality
    from .registry import build, get_entry

    name = spec["model"]
    entry = get_entry(name)
    if not get_modality(entry.modality).feature_maps:
        raise HeadstartError(
            f"Model {name!r} is {entry.modality}; a segmenter needs an image backbone "
            "(efficientnet_lite0, lite1, lite2, or timm:<architecture>)."
        )
    backbone = build(name, pretrained=pretrained, weights=weights)
    return UNetSegmenter(backbone, num_classes, tuple(spec.get("widths", WIDTHS)))
