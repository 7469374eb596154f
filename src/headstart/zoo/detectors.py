"""Detectors: the two transfer routes for object detection, behind one small interface.

- `fcos`: torchvision's FCOS head and a feature pyramid (FPN, P3-P7) on a bundled ImageNet
  backbone, read through `forward_intermediates`. Works offline with no extra weights; the pyramid
  and head start from random weights.
- `yolox_nano`: a whole detector pre-trained on COCO (zoo/yolox.py) whose class convolutions are
  replaced for the user's classes; its weights are fetched (`headstart fetch yolox_nano`) or given
  with --weights.

Every detector takes float RGB images in [0, 1], letterboxed into squares whose side is a multiple
of 32 (data/letterbox.py), and boxes in those pixels. `param_groups()` lists its parameters input to
output with the pre-trained part first; `head_groups` says how many of the last groups are the
detection head (and neck) a strategy trains first.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from ..errors import HeadstartError
from .detector_entries import DETECTORS, detector_weights

SCORE_THRESHOLD = 0.01  # low, as COCO evaluation wants; predict filters higher (see estimator)
NMS_THRESHOLD = 0.6
MAX_DETECTIONS = 100


class Detector(nn.Module):
    """forward(images, targets) -> {"loss", ...} while training; detect(images) -> one dict of
    {"boxes" (N, 4) xyxy, "scores", "labels" (0-based)} per image, in the letterboxed pixels."""

    head_groups: int = 1
    route: str = ""

    def param_groups(self) -> list[tuple[str, list[nn.Parameter]]]:
        raise NotImplementedError

    def default_lr(self, pretrained: bool) -> float:
        """AdamW's peak learning rate for the head (the strategy scales the backbone's)."""
        return 1e-3

    def detect(self, images: torch.Tensor, score_threshold: float = SCORE_THRESHOLD) -> list[dict]:
        raise NotImplementedError

    def spec(self) -> dict:
        """What a run's config.json records to rebuild this detector's architecture."""
        raise NotImplementedError


# ---- route 1: FCOS + FPN on a bundled ImageNet backbone --------------------------------------


class _PyramidBody(nn.Module):
    """The backbone's last maps at strides 8, 16 and 32, through an FPN with P6 and P7."""

    def __init__(self, backbone, taps: list[int], channels: list[int], width: int):
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelP6P7

        super().__init__()
        self.backbone, self.taps = backbone, taps
        self.fpn = FeaturePyramidNetwork(channels, width, extra_blocks=LastLevelP6P7(width, width))
        self.out_channels = width
        mean, std = backbone.preprocess.mean, backbone.preprocess.std
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> OrderedDict:
        maps = self.backbone.forward_intermediates((images - self.mean) / self.std)
        return self.fpn(OrderedDict((str(i), maps[t]) for i, t in enumerate(self.taps)))


def pyramid_taps(backbone) -> tuple[list[int], list[int]]:
    """Indices and channels of the last intermediate at strides 8, 16 and 32."""
    side = 128
    with torch.no_grad():
        maps = backbone.forward_intermediates(torch.zeros(1, 3, side, side))
    taps, channels = [], []
    for stride in (8, 16, 32):
        found = [i for i, m in enumerate(maps) if m.ndim == 4 and m.shape[-1] == side // stride]
        if not found:
            raise HeadstartError(
                f"Backbone {backbone.name!r} gives no feature map at stride {stride}: a detector "
                "needs a convolutional image backbone (e.g. efficientnet_lite0)."
            )
        taps.append(found[-1])
        channels.append(int(maps[found[-1]].shape[1]))
    return taps, channels


class FCOSDetector(Detector):
    """torchvision FCOS (anchor-free, focal loss, GIoU) on our backbone's pyramid."""

    route = "fcos"
    head_groups = 2  # the FPN and the FCOS head start from random weights

    def __init__(self, backbone, num_classes: int, width: int = 64, convs: int = 2):
        from torchvision.models.detection import FCOS
        from torchvision.models.detection.fcos import FCOSHead

        super().__init__()
        taps, channels = pyramid_taps(backbone)
        body = _PyramidBody(backbone, taps, channels, width)
        head = FCOSHead(width, 1, num_classes, num_convs=convs)
        # images arrive letterboxed and normalised by the body: no resizing, no normalising here
        self.model = FCOS(
            body,
            num_classes,
            min_size=32,
            max_size=100_000,
            image_mean=[0.0, 0.0, 0.0],
            image_std=[1.0, 1.0, 1.0],
            head=head,
            score_thresh=SCORE_THRESHOLD,
            nms_thresh=NMS_THRESHOLD,
            detections_per_img=MAX_DETECTIONS,
            topk_candidates=1000,
        )
        self.model.transform.resize = _no_resize
        self.num_classes, self.width, self.convs = num_classes, width, convs

    @property
    def backbone(self):
        return self.model.backbone.backbone

    def forward(self, images: torch.Tensor, targets: list[dict]) -> dict[str, torch.Tensor]:
        losses = self.model(list(images), targets)
        losses["loss"] = sum(losses.values())
        return losses

    def detect(self, images: torch.Tensor, score_threshold: float = SCORE_THRESHOLD) -> list[dict]:
        self.model.score_thresh = score_threshold
        return self.model(list(images))

    def param_groups(self) -> list[tuple[str, list[nn.Parameter]]]:
        groups = [(g.name, list(g.params)) for g in self.backbone.groups()]
        groups.append(("fpn", list(self.model.backbone.fpn.parameters())))
        groups.append(("head", list(self.model.head.parameters())))
        return groups

    def spec(self) -> dict:
        return {"route": self.route, "width": self.width, "convs": self.convs}


def _no_resize(image, target=None):
    return image, target


def build_fcos(
    backbone_name: str, num_classes: int, pretrained: bool = True, weights=None
) -> FCOSDetector:
    from ..modalities import get_modality
    from .registry import build, get_entry

    entry = get_entry(backbone_name)
    if not get_modality(entry.modality).feature_maps:
        raise HeadstartError(
            f"Model {backbone_name!r} is {entry.modality}; a detector needs an image backbone "
            "(efficientnet_lite0, or yolox_nano for a COCO-pretrained detector)."
        )
    return FCOSDetector(build(backbone_name, pretrained=pretrained, weights=weights), num_classes)


# ---- route 2: YOLOX-Nano pre-trained on COCO -------------------------------------------------


class YOLOXDetector(Detector):
    """YOLOX-Nano (zoo/yolox.py) with its SimOTA loss; fed BGR 0-255 as its ONNX original."""

    route = "yolox"
    head_groups = 2  # the PAFPN neck and the decoupled head

    def __init__(self, num_classes: int, onnx_file: Path | None = None):
        from .yolox import YOLOXLoss, build_yolox_nano

        super().__init__()
        self.model = build_yolox_nano(onnx_file, num_classes)
        self.loss = YOLOXLoss(num_classes)
        self.num_classes = num_classes

    def default_lr(self, pretrained: bool) -> float:
        # BatchNorm is folded into the COCO convolutions: large steps wreck their features
        return 5e-4 if pretrained else 1e-3

    @staticmethod
    def _input(images: torch.Tensor) -> torch.Tensor:
        return images.flip(1) * 255.0  # RGB [0, 1] -> BGR [0, 255]

    def forward(self, images: torch.Tensor, targets: list[dict]) -> dict[str, torch.Tensor]:
        return self.loss(self.model(self._input(images)), targets)

    def detect(self, images: torch.Tensor, score_threshold: float = SCORE_THRESHOLD) -> list[dict]:
        from .yolox import decode

        outputs = self.model(self._input(images))
        return decode(outputs, score_threshold, NMS_THRESHOLD, MAX_DETECTIONS)

    def param_groups(self) -> list[tuple[str, list[nn.Parameter]]]:
        return self.model.param_groups()

    def spec(self) -> dict:
        return {"route": self.route}


def build_detector(spec: dict, num_classes: int, pretrained: bool, weights=None) -> Detector:
    """The detector a run's spec names ({"route", "model", ...}), pre-trained or random."""
    if spec["model"] in DETECTORS:  # a whole pre-trained detector (YOLOX-Nano)
        onnx = detector_weights(spec["model"], weights) if pretrained else None
        return YOLOXDetector(num_classes, onnx)
    return build_fcos(spec["model"], num_classes, pretrained=pretrained, weights=weights)
