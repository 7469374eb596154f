"""YOLOX-Nano object detector as a plain, trainable PyTorch module, with its loss and decode.

YOLOX is by Megvii (https://github.com/Megvii-BaseDetection/YOLOX), Apache-2.0. This is YOLOX-Nano:
CSPDarknet backbone (depth 0.33, width 0.25, depthwise convs, SiLU), PAFPN neck and the decoupled
anchor-free head, 80 COCO classes, trained at 416x416.

COCO weights come from the ONNX export in GitHub Kazuhito00/YOLOX-ONNX-TFLite-Sample,
model/yolox_nano.onnx (opset 11, BatchNorm folded into the convs, output (1, 3549, 85) without
decode), sha256 695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14.
Input convention of those weights (checked against ONNX Runtime on photos): float pixel values
0-255, BGR channel order as OpenCV reads images, no mean/std, letterboxed with value 114.

The architecture is written out here rather than converted from the graph because a saved run must
rebuild the model from its own code and a state dict, without the ONNX file and without running
code that came from a file; the ONNX file is only read for its conv weights (`load_onnx_weights`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms, box_iou

from headstart.errors import HeadstartError

STRIDES = (8, 16, 32)
INPUT_SIZE = 416
PAD_VALUE = 114
COCO_NUM_CLASSES = 80
ONNX_SHA256 = "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14"
ONNX_SOURCE = "GitHub Kazuhito00/YOLOX-ONNX-TFLite-Sample, model/yolox_nano.onnx"
PRIOR_PROB = 0.01


class BaseConv(nn.Module):
    """Conv with bias (BatchNorm folded into it) followed by SiLU."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=k // 2, groups=groups, bias=True)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class DWConv(nn.Module):
    """Depthwise kxk conv then pointwise 1x1 conv."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__()
        self.dconv = BaseConv(cin, cin, k, stride, groups=cin)
        self.pconv = BaseConv(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pconv(self.dconv(x))


class Bottleneck(nn.Module):
    def __init__(self, channels: int, shortcut: bool):
        super().__init__()
        self.conv1 = BaseConv(channels, channels, 1)
        self.conv2 = DWConv(channels, channels, 3)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return y + x if self.shortcut else y


class CSPLayer(nn.Module):
    def __init__(self, cin: int, cout: int, n: int, shortcut: bool = True):
        super().__init__()
        hidden = cout // 2
        self.conv1 = BaseConv(cin, hidden, 1)
        self.conv2 = BaseConv(cin, hidden, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, shortcut) for _ in range(n)))
        self.conv3 = BaseConv(2 * hidden, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.conv1(x)
        x2 = self.conv2(x)
        return self.conv3(torch.cat([self.m(x1), x2], 1))


class SPPBottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, kernels: tuple[int, ...] = (5, 9, 13)):
        super().__init__()
        hidden = cin // 2
        self.conv1 = BaseConv(cin, hidden, 1)
        self.pools = nn.ModuleList(nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernels)
        self.conv2 = BaseConv(hidden * (len(kernels) + 1), cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x, *(pool(x) for pool in self.pools)], 1))


class Focus(nn.Module):
    """Space-to-depth (2x2 pixels into channels) then a 3x3 conv."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = BaseConv(cin * 4, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Order fixed by the pretrained weights: (even row, even col), (odd, even), (even, odd), ...
        patches = [x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]]
        return self.conv(torch.cat(patches, 1))


class CSPDarknet(nn.Module):
    """Backbone; returns the stride 8, 16 and 32 feature maps (64, 128, 256 channels)."""

    def __init__(self):
        super().__init__()
        self.stem = Focus(3, 16)
        self.dark2 = nn.Sequential(DWConv(16, 32, 3, 2), CSPLayer(32, 32, 1))
        self.dark3 = nn.Sequential(DWConv(32, 64, 3, 2), CSPLayer(64, 64, 3))
        self.dark4 = nn.Sequential(DWConv(64, 128, 3, 2), CSPLayer(128, 128, 3))
        self.dark5 = nn.Sequential(
            DWConv(128, 256, 3, 2),
            SPPBottleneck(256, 256),
            CSPLayer(256, 256, 1, shortcut=False),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c3 = self.dark3(self.dark2(self.stem(x)))
        c4 = self.dark4(c3)
        return c3, c4, self.dark5(c4)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


class PAFPN(nn.Module):
    """Top-down then bottom-up feature fusion; outputs at strides 8, 16, 32."""

    def __init__(self):
        super().__init__()
        self.lateral_conv0 = BaseConv(256, 128, 1)
        self.c3_p4 = CSPLayer(256, 128, 1, shortcut=False)
        self.reduce_conv1 = BaseConv(128, 64, 1)
        self.c3_p3 = CSPLayer(128, 64, 1, shortcut=False)
        self.bu_conv2 = DWConv(64, 64, 3, 2)
        self.c3_n3 = CSPLayer(128, 128, 1, shortcut=False)
        self.bu_conv1 = DWConv(128, 128, 3, 2)
        self.c3_n4 = CSPLayer(256, 256, 1, shortcut=False)

    def forward(self, feats: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        x2, x1, x0 = feats
        fpn_out0 = self.lateral_conv0(x0)
        f = self.c3_p4(torch.cat([upsample2(fpn_out0), x1], 1))
        fpn_out1 = self.reduce_conv1(f)
        pan_out2 = self.c3_p3(torch.cat([upsample2(fpn_out1), x2], 1))
        pan_out1 = self.c3_n3(torch.cat([self.bu_conv2(pan_out2), fpn_out1], 1))
        pan_out0 = self.c3_n4(torch.cat([self.bu_conv1(pan_out1), fpn_out0], 1))
        return [pan_out2, pan_out1, pan_out0]


def prior_bias() -> float:
    """Bias that starts sigmoid at PRIOR_PROB, so early steps are not swamped by negatives."""
    return -math.log((1 - PRIOR_PROB) / PRIOR_PROB)


def new_pred_conv(cin: int, cout: int) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 1)
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.constant_(conv.bias, prior_bias())
    return conv


class YOLOXHead(nn.Module):
    """Decoupled head; per level a map (B, 4 + 1 + C, h, w) = [reg raw, obj logit, cls logits]."""

    def __init__(self, num_classes: int, in_channels=(64, 128, 256), hidden: int = 64):
        super().__init__()
        self.num_classes = num_classes
        self.stems = nn.ModuleList(BaseConv(c, hidden, 1) for c in in_channels)
        self.cls_convs = nn.ModuleList(self.two_dwconvs(hidden) for _ in in_channels)
        self.reg_convs = nn.ModuleList(self.two_dwconvs(hidden) for _ in in_channels)
        self.cls_preds = nn.ModuleList(new_pred_conv(hidden, num_classes) for _ in in_channels)
        self.reg_preds = nn.ModuleList(nn.Conv2d(hidden, 4, 1) for _ in in_channels)
        self.obj_preds = nn.ModuleList(new_pred_conv(hidden, 1) for _ in in_channels)

    @staticmethod
    def two_dwconvs(channels: int) -> nn.Sequential:
        return nn.Sequential(DWConv(channels, channels, 3), DWConv(channels, channels, 3))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        outputs = []
        for i, f in enumerate(feats):
            x = self.stems[i](f)
            # cls before reg: the ONNX weight loader relies on this call order.
            cls = self.cls_preds[i](self.cls_convs[i](x))
            r = self.reg_convs[i](x)
            outputs.append(torch.cat([self.reg_preds[i](r), self.obj_preds[i](r), cls], 1))
        return outputs


class YOLOXNano(nn.Module):
    """YOLOX-Nano. Input (B, 3, H, W), H and W multiples of 32, BGR 0-255 for the COCO weights."""

    strides = STRIDES
    head_group_count = 1  # the last entry of param_groups() is the detection head

    def __init__(self, num_classes: int = COCO_NUM_CLASSES):
        super().__init__()
        self.num_classes = num_classes
        self.backbone = CSPDarknet()
        self.neck = PAFPN()
        self.head = YOLOXHead(num_classes)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.head(self.neck(self.backbone(images)))

    def param_groups(self) -> list[tuple[str, list[nn.Parameter]]]:
        """Parameters from input to output; the last `head_group_count` groups are the head."""
        b = self.backbone
        return [
            ("stem+dark2", [*b.stem.parameters(), *b.dark2.parameters()]),
            ("dark3", list(b.dark3.parameters())),
            ("dark4", list(b.dark4.parameters())),
            ("dark5", list(b.dark5.parameters())),
            ("neck", list(self.neck.parameters())),
            ("head", list(self.head.parameters())),
        ]

    def replace_classes(self, num_classes: int) -> None:
        """New class prediction convs for `num_classes`; every other weight is kept."""
        old = self.head.cls_preds[0]
        self.head.cls_preds = nn.ModuleList(
            new_pred_conv(conv.in_channels, num_classes) for conv in self.head.cls_preds
        ).to(device=old.weight.device, dtype=old.weight.dtype)
        self.head.num_classes = num_classes
        self.num_classes = num_classes


# ---------------------------------------------------------------------------------------------
# Loading the COCO weights from the ONNX file


def fix_hint() -> str:
    return f"Pass the YOLOX-Nano ONNX file from {ONNX_SOURCE} (sha256 {ONNX_SHA256[:12]}...)."


def read_onnx_convs(path: Path) -> list[tuple[str, dict, list]]:
    """(node name, attributes, [weight, bias] arrays) for every Conv node, in graph order."""
    import onnx
    from onnx import numpy_helper

    if not path.is_file():
        raise HeadstartError(f"YOLOX-Nano weights file {path} does not exist. {fix_hint()}")
    try:
        graph = onnx.load(str(path)).graph
    except Exception as exc:  # protobuf raises several types for a damaged file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HeadstartError(
            f"{path} is not a readable ONNX file ({reason}). {fix_hint()}"
        ) from exc
    tensors = {t.name: t for t in graph.initializer}
    for node in graph.node:  # some exporters keep weights as Constant nodes
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            tensors[node.output[0]] = node.attribute[0].t
    convs = []
    for i, node in enumerate(n for n in graph.node if n.op_type == "Conv"):
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        arrays = [
            numpy_helper.to_array(tensors[name]) if name in tensors else None
            for name in node.input[1:]
        ]
        convs.append((node.name or f"Conv #{i}", attrs, arrays))
    return convs


def conv_call_order(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """The model's convs in the order a forward pass calls them (recorded on a dummy input)."""
    order: list[tuple[str, nn.Conv2d]] = []
    hooks = [
        module.register_forward_hook(lambda mod, args, out, name=name: order.append((name, mod)))
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d)
    ]
    param = next(model.parameters())
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, 64, 64, device=param.device, dtype=param.dtype))
    finally:
        for hook in hooks:
            hook.remove()
    return order


def check_conv(path: Path, index: int, name: str, conv: nn.Conv2d, onnx_conv) -> None:
    node, attrs, arrays = onnx_conv
    where = f"{path}: conv {index} ({name}, ONNX node {node})"
    if len(arrays) != 2 or any(a is None for a in arrays):
        raise HeadstartError(f"{where} has no constant weight and bias. {fix_hint()}")
    expected = [tuple(conv.weight.shape), tuple(conv.bias.shape)]
    found = [tuple(a.shape) for a in arrays]
    if expected != found:
        raise HeadstartError(
            f"{where}: expected weight/bias shapes {expected}, found {found}. {fix_hint()}"
        )
    stride = tuple(attrs.get("strides", (1, 1)))
    groups = attrs.get("group", 1)
    if stride != conv.stride or groups != conv.groups:
        raise HeadstartError(
            f"{where}: expected stride {conv.stride} groups {conv.groups}, "
            f"found stride {stride} groups {groups}. {fix_hint()}"
        )


def load_onnx_weights(model: YOLOXNano, path: str | Path) -> YOLOXNano:
    """Copy the conv weights of the YOLOX-Nano ONNX export into `model` (80 classes)."""
    path = Path(path)
    onnx_convs = read_onnx_convs(path)
    convs = conv_call_order(model)
    if len(onnx_convs) != len(convs):
        raise HeadstartError(
            f"{path} has {len(onnx_convs)} Conv nodes, YOLOX-Nano with {model.num_classes} "
            f"classes has {len(convs)}. {fix_hint()}"
        )
    for i, ((name, conv), onnx_conv) in enumerate(zip(convs, onnx_convs, strict=True)):
        check_conv(path, i, name, conv, onnx_conv)
    with torch.no_grad():
        for (_, conv), (_, _, (weight, bias)) in zip(convs, onnx_convs, strict=True):
            conv.weight.copy_(torch.from_numpy(weight.copy()))
            conv.bias.copy_(torch.from_numpy(bias.copy()))
    return model


def build_yolox_nano(onnx_path: str | Path | None, num_classes: int) -> YOLOXNano:
    """Random init (onnx_path None) or COCO weights from the ONNX file; `num_classes` classes."""
    if onnx_path is None:
        return YOLOXNano(num_classes)
    model = load_onnx_weights(YOLOXNano(COCO_NUM_CLASSES), onnx_path)
    if num_classes != COCO_NUM_CLASSES:
        model.replace_classes(num_classes)
    return model


# ---------------------------------------------------------------------------------------------
# Decode and loss


def flatten_outputs(outputs: list[torch.Tensor]) -> torch.Tensor:
    """(B, A, 5 + C) with anchors level by level, row-major within a level (the ONNX layout)."""
    return torch.cat([o.flatten(2) for o in outputs], 2).transpose(1, 2)


def anchor_grid(outputs: list[torch.Tensor], strides=STRIDES) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid cell (x, y) of every anchor, shape (A, 2), and its stride, shape (A,)."""
    grids, steps = [], []
    for out, stride in zip(outputs, strides, strict=True):
        h, w = out.shape[-2:]
        ys, xs = torch.meshgrid(
            torch.arange(h, device=out.device), torch.arange(w, device=out.device), indexing="ij"
        )
        grids.append(torch.stack([xs, ys], -1).reshape(-1, 2))
        steps.append(torch.full((h * w,), float(stride), device=out.device))
    return torch.cat(grids).float(), torch.cat(steps)


def decode_boxes(reg: torch.Tensor, grid: torch.Tensor, stride: torch.Tensor) -> torch.Tensor:
    """Raw regression (..., A, 4) to x1y1x2y2 boxes in input pixels."""
    centre = (reg[..., :2] + grid) * stride[:, None]
    # Clamped so an untrained head cannot overflow exp into inf and NaN the IoU.
    size = torch.exp(reg[..., 2:].clamp(max=10.0)) * stride[:, None]
    return torch.cat([centre - size / 2, centre + size / 2], -1)


@torch.no_grad()
def decode(
    outputs: list[torch.Tensor],
    score_threshold: float = 0.01,
    nms_threshold: float = 0.65,
    max_detections: int = 100,
) -> list[dict[str, torch.Tensor]]:
    """Per image {"boxes" (N, 4) x1y1x2y2 input pixels, "scores" (N,), "labels" (N,) int64}."""
    flat = flatten_outputs(outputs).float()
    grid, stride = anchor_grid(outputs)
    boxes = decode_boxes(flat[..., :4], grid, stride)
    # As YOLOX: one class per anchor, the best one, scored obj * cls.
    scores, labels = (flat[..., 4:5].sigmoid() * flat[..., 5:].sigmoid()).max(-1)
    results = []
    for b in range(flat.shape[0]):
        keep = scores[b] >= score_threshold
        bx, sc, lb = boxes[b][keep], scores[b][keep], labels[b][keep]
        kept = batched_nms(bx, sc, lb, nms_threshold)[:max_detections]
        results.append({"boxes": bx[kept], "scores": sc[kept], "labels": lb[kept].long()})
    return results


def paired_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of matching rows of two (N, 4) x1y1x2y2 tensors."""
    tl = torch.maximum(a[:, :2], b[:, :2])
    br = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (br - tl).clamp(min=0).prod(1)
    area_a = (a[:, 2:] - a[:, :2]).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).prod(1)
    return inter / (area_a + area_b - inter + 1e-16)


def pairwise_cls_cost(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE summed over classes of every anchor's probs (K, C) against every gt's one-hot (N,)."""
    # log clamped at -100 as F.binary_cross_entropy does.
    log_p = torch.log(probs).clamp(min=-100)
    log_not_p = torch.log1p(-probs).clamp(min=-100)
    all_negative = -log_not_p.sum(1)  # (K,)
    # Swap the gt class's term from "negative" to "positive": (N, K).
    return all_negative[None] - log_p[:, labels].T + log_not_p[:, labels].T


def candidate_masks(
    centres: torch.Tensor, stride: torch.Tensor, gt: torch.Tensor, radius: float = 2.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, A) masks: anchor centre inside the gt box; within `radius` strides of the gt centre."""
    x, y = centres[None, :, 0], centres[None, :, 1]
    in_box = (x > gt[:, 0:1]) & (x < gt[:, 2:3]) & (y > gt[:, 1:2]) & (y < gt[:, 3:4])
    gt_centre = (gt[:, :2] + gt[:, 2:]) / 2
    reach = radius * stride[None]
    in_centre = ((x - gt_centre[:, 0:1]).abs() < reach) & ((y - gt_centre[:, 1:2]).abs() < reach)
    return in_box, in_centre


@torch.no_grad()
def simota_assign(
    pred_boxes: torch.Tensor,
    cls_logits: torch.Tensor,
    obj_logits: torch.Tensor,
    centres: torch.Tensor,
    stride: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SimOTA for one image: (positive mask (A,), gt index (P,), IoU with it (P,))."""
    in_box, in_centre = candidate_masks(centres, stride, gt_boxes)
    fg = (in_box | in_centre).any(0)
    cand = fg.nonzero().squeeze(1)
    if cand.numel() == 0:
        return fg, cand, pred_boxes.new_zeros(0)
    ious = box_iou(gt_boxes, pred_boxes[cand])  # (N, K)
    probs = (cls_logits[cand].sigmoid() * obj_logits[cand, None].sigmoid()).sqrt()
    cost = (
        pairwise_cls_cost(probs, gt_labels)
        + 3.0 * -torch.log(ious + 1e-8)
        + 1e5 * ~(in_box[:, cand] & in_centre[:, cand])
    )
    matched = dynamic_k_matching(cost, ious)  # (N, K) bool
    claims = matched.sum(0)
    # An anchor claimed by several gts goes to its cheapest gt overall, as in YOLOX.
    gt_index = torch.where(
        claims > 1, cost.argmin(0), cost.masked_fill(~matched, math.inf).argmin(0)
    )
    positive = claims > 0
    fg[cand] = positive
    gt_index = gt_index[positive]
    return fg, gt_index, ious[gt_index, positive.nonzero().squeeze(1)]


def dynamic_k_matching(cost: torch.Tensor, ious: torch.Tensor) -> torch.Tensor:
    """Each gt takes its k cheapest anchors, k = floor(sum of its top-10 IoUs), at least 1."""
    top = ious.topk(min(10, ious.shape[1]), dim=1).values
    ks = top.sum(1).int().clamp(min=1)  # (N,)
    order = cost.topk(int(ks.max()), dim=1, largest=False).indices  # (N, kmax)
    take = torch.arange(order.shape[1], device=cost.device)[None] < ks[:, None]
    matched = torch.zeros_like(cost, dtype=torch.bool)
    rows = torch.arange(cost.shape[0], device=cost.device)[:, None].expand_as(order)
    matched[rows[take], order[take]] = True
    return matched


class YOLOXLoss(nn.Module):
    """YOLOX training loss with SimOTA assignment (IoU, objectness and class terms)."""

    def __init__(self, num_classes: int, strides=STRIDES, iou_weight: float = 5.0):
        super().__init__()
        self.num_classes = num_classes
        self.strides = tuple(strides)
        self.iou_weight = iou_weight

    def forward(
        self, outputs: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        flat = flatten_outputs(outputs).float()
        if flat.shape[2] != 5 + self.num_classes:
            raise ValueError(
                f"outputs have {flat.shape[2] - 5} classes, loss has {self.num_classes}"
            )
        if len(targets) != flat.shape[0]:
            raise ValueError(f"{len(targets)} targets for a batch of {flat.shape[0]} images")
        grid, stride = anchor_grid(outputs, self.strides)
        pred_boxes = decode_boxes(flat[..., :4], grid, stride)
        centres = (grid + 0.5) * stride[:, None]
        fg_masks, box_targets, cls_targets = [], [], []
        for b, target in enumerate(targets):
            fg, gt_boxes, cls_target = self.assign(
                pred_boxes[b].detach(), flat[b].detach(), centres, stride, target
            )
            fg_masks.append(fg)
            box_targets.append(gt_boxes)
            cls_targets.append(cls_target)
        fg = torch.stack(fg_masks)
        num_fg = max(int(fg.sum()), 1)
        iou = paired_iou(pred_boxes[fg], torch.cat(box_targets))
        loss_iou = self.iou_weight * (1 - iou**2).sum() / num_fg
        loss_obj = (
            F.binary_cross_entropy_with_logits(flat[..., 4], fg.float(), reduction="sum") / num_fg
        )
        loss_cls = (
            F.binary_cross_entropy_with_logits(
                flat[..., 5:][fg], torch.cat(cls_targets), reduction="sum"
            )
            / num_fg
        )
        loss = loss_iou + loss_obj + loss_cls
        return {"loss": loss, "loss_iou": loss_iou, "loss_obj": loss_obj, "loss_cls": loss_cls}

    def assign(self, pred_boxes, flat, centres, stride, target):
        """One image: positive mask (A,), target boxes (P, 4), class targets (P, C)."""
        gt_boxes = target["boxes"].to(pred_boxes).reshape(-1, 4)
        gt_labels = target["labels"].to(pred_boxes.device).long().reshape(-1)
        if gt_boxes.shape[0] == 0:
            fg = torch.zeros(flat.shape[0], dtype=torch.bool, device=flat.device)
            return fg, gt_boxes, flat.new_zeros(0, self.num_classes)
        fg, gt_index, ious = simota_assign(
            pred_boxes, flat[:, 5:], flat[:, 4], centres, stride, gt_boxes, gt_labels
        )
        one_hot = F.one_hot(gt_labels[gt_index], self.num_classes).to(flat)
        return fg, gt_boxes[gt_index], one_hot * ious[:, None]
