"""YOLOX-Nano: equality with the ONNX export, decode, SimOTA loss, training and weight loading."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.ops import box_iou

from headstart.errors import HeadstartError
from headstart.zoo.yolox import (
    PAD_VALUE,
    YOLOXLoss,
    YOLOXNano,
    anchor_grid,
    build_yolox_nano,
    decode,
    decode_boxes,
    flatten_outputs,
    load_onnx_weights,
    simota_assign,
)

ONNX = Path(__file__).resolve().parents[2] / "shared/data/weights/yolox_nano/yolox_nano.onnx"
needs_onnx = pytest.mark.skipif(not ONNX.is_file(), reason=f"YOLOX-Nano ONNX file not at {ONNX}")


@pytest.fixture(autouse=True)
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def coco_model() -> YOLOXNano:
    return build_yolox_nano(ONNX, 80).eval()


@pytest.fixture(scope="module")
def ort_session():
    import onnxruntime as ort

    return ort.InferenceSession(str(ONNX), providers=["CPUExecutionProvider"])


def letterbox_bgr(rgb: np.ndarray, size: int = 416) -> torch.Tensor:
    """(1, 3, size, size) float BGR 0-255, resized to fit and padded bottom/right as YOLOX does."""
    h, w = rgb.shape[:2]
    scale = min(size / h, size / w)
    nh, nw = round(h * scale), round(w * scale)
    canvas = np.full((size, size, 3), PAD_VALUE, np.uint8)
    canvas[:nh, :nw] = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.BILINEAR))
    return torch.from_numpy(canvas[..., ::-1].copy()).permute(2, 0, 1)[None].float()


def as_onnx_output(outputs: list[torch.Tensor]) -> np.ndarray:
    """What the graph does after the convs: sigmoid obj and cls, flatten levels, anchors first."""
    flat = flatten_outputs(outputs)
    return torch.cat([flat[..., :4], flat[..., 4:].sigmoid()], -1).numpy()


@functools.cache
def astronaut() -> torch.Tensor:
    from skimage import data

    return letterbox_bgr(data.astronaut())


@needs_onnx
@pytest.mark.parametrize("picture", ["random", "astronaut"])
def test_matches_onnx_runtime(coco_model, ort_session, picture):
    torch.manual_seed(0)
    x = torch.rand(1, 3, 416, 416) * 255 if picture == "random" else astronaut()
    expected = ort_session.run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        got = as_onnx_output(coco_model(x))
    assert got.shape == expected.shape == (1, 3549, 85)
    assert np.abs(got - expected).max() < 1e-4


@needs_onnx
def test_decode_finds_the_astronaut(coco_model):
    with torch.no_grad():
        det = decode(coco_model(astronaut()))[0]
    people = det["scores"][det["labels"] == 0]
    assert people.numel() > 0 and people.max() > 0.5
    assert det["boxes"].shape == (det["scores"].shape[0], 4)
    assert det["labels"].dtype == torch.int64


@pytest.mark.parametrize(("batch", "height", "width"), [(1, 320, 320), (2, 256, 384)])
def test_output_shapes(batch, height, width):
    model = YOLOXNano(num_classes=7).eval()
    with torch.no_grad():
        outputs = model(torch.rand(batch, 3, height, width) * 255)
    assert [tuple(o.shape) for o in outputs] == [
        (batch, 12, height // s, width // s) for s in model.strides
    ]


def test_param_groups_cover_every_parameter_once():
    model = YOLOXNano(num_classes=3)
    groups = model.param_groups()
    ids = [id(p) for _, params in groups for p in params]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    head = {id(p) for _, params in groups[-model.head_group_count :] for p in params}
    assert head == {id(p) for p in model.head.parameters()}


def two_image_targets() -> list[dict[str, torch.Tensor]]:
    # One small and one large box, so positives fall on different levels; the second image is
    # a negative.
    boxes = torch.tensor([[20.0, 30.0, 60.0, 70.0], [100.0, 80.0, 300.0, 310.0]])
    return [
        {"boxes": boxes, "labels": torch.tensor([0, 2])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]


def test_loss_is_finite_and_reaches_every_parameter():
    torch.manual_seed(0)
    model = YOLOXNano(num_classes=3)
    losses = YOLOXLoss(num_classes=3)(model(torch.rand(2, 3, 320, 320) * 255), two_image_targets())
    assert set(losses) == {"loss", "loss_iou", "loss_obj", "loss_cls"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_iou"] > 0 and losses["loss_cls"] > 0
    losses["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_negative_images_only_give_objectness_loss():
    model = YOLOXNano(num_classes=3)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = YOLOXLoss(num_classes=3)(model(torch.rand(2, 3, 128, 128) * 255), [empty, empty])
    assert losses["loss_iou"] == 0 and losses["loss_cls"] == 0 and losses["loss_obj"] > 0


def test_training_fits_one_box():
    # Random init has no BatchNorm to keep activations in range, so the fit is slow to reach
    # confident scores; one class at 128x128 keeps 30 steps cheap, and the check is on the
    # best-scoring box.
    torch.manual_seed(0)
    model, loss_fn = YOLOXNano(num_classes=1), YOLOXLoss(num_classes=1)
    image = torch.full((1, 3, 128, 128), 60.0)
    image[..., 38:102, 32:90] = 200.0
    box = torch.tensor([[32.0, 38.0, 90.0, 102.0]])
    targets = [{"boxes": box, "labels": torch.tensor([0])}]
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    history = []
    for _ in range(30):
        loss = loss_fn(model(image), targets)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        history.append(loss.item())
    assert history[-1] < 0.85 * history[0]
    with torch.no_grad():
        det = decode(model.eval()(image), score_threshold=0.0)[0]
    assert box_iou(det["boxes"][:1], box).item() > 0.5


def test_replace_classes_keeps_other_weights():
    model = YOLOXNano()
    before = {k: v.clone() for k, v in model.state_dict().items() if "cls_preds" not in k}
    model.replace_classes(3)
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert all(tuple(c.weight.shape) == (3, 64, 1, 1) for c in model.head.cls_preds)
    assert torch.allclose(model.head.cls_preds[0].bias, torch.full((3,), -4.59512), atol=1e-4)
    with torch.no_grad():
        outputs = model(torch.zeros(1, 3, 64, 64))
    assert all(o.shape[1] == 5 + 3 for o in outputs)


@needs_onnx
def test_build_with_other_class_count_keeps_coco_features(coco_model):
    model = build_yolox_nano(ONNX, 3)
    assert model.num_classes == 3
    assert torch.equal(model.head.reg_preds[0].weight, coco_model.head.reg_preds[0].weight)


def tiny_onnx(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.zeros((16, 12, 3, 3), np.float32), "w")
    bias = numpy_helper.from_array(np.zeros(16, np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 12, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 8, 8])],
        initializer=[weight, bias],
    )
    onnx.save(helper.make_model(graph), str(path))


@pytest.mark.parametrize("kind", ["one_conv", "truncated", "missing"])
def test_wrong_file_names_the_file(tmp_path, kind):
    path = tmp_path / "wrong.onnx"
    if kind == "one_conv":
        tiny_onnx(path)
    elif kind == "truncated":
        path.write_bytes(ONNX.read_bytes()[:5000] if ONNX.is_file() else b"\x08\x07\x12\xff")
    with pytest.raises(HeadstartError) as error:
        load_onnx_weights(YOLOXNano(), path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message and "YOLOX-Nano ONNX" in message


@needs_onnx
def test_wrong_class_count_names_the_conv():
    with pytest.raises(HeadstartError, match=r"cls_preds.*\(80, 64, 1, 1\)"):
        load_onnx_weights(YOLOXNano(num_classes=3), ONNX)


def test_decode_empty_when_nothing_scores():
    outputs = [torch.full((1, 6, s, s), -20.0) for s in (4, 2, 1)]
    det = decode(outputs, score_threshold=0.5)[0]
    assert det["boxes"].shape == (0, 4) and det["labels"].dtype == torch.int64


def test_decode_places_box_from_grid_and_stride():
    # One confident anchor at stride-16 cell (x=2, y=1) with offsets 0.5 and size exp(0) * 16.
    outputs = [torch.full((1, 6, h, h), -20.0) for h in (8, 4, 2)]
    outputs[1][0, :, 1, 2] = torch.tensor([0.5, 0.5, 0.0, 0.0, 20.0, 20.0])
    det = decode(outputs)[0]
    assert torch.allclose(det["boxes"], torch.tensor([[32.0, 16.0, 48.0, 32.0]]))


def yolox_reference_assign(pred, cls, obj, centres, stride, gt, labels, num_classes):
    """SimOTA transcribed from YOLOX 0.2 (loop over gts), to check the vectorised version."""
    n = gt.shape[0]
    x, y = centres[:, 0][None], centres[:, 1][None]
    in_box = torch.stack([x - gt[:, :1], y - gt[:, 1:2], gt[:, 2:3] - x, gt[:, 3:] - y], 2)
    in_box = in_box.min(-1).values > 0
    cx, cy = ((gt[:, 0] + gt[:, 2]) / 2)[:, None], ((gt[:, 1] + gt[:, 3]) / 2)[:, None]
    r = 2.5 * stride[None]
    in_ctr = torch.stack([x - (cx - r), y - (cy - r), (cx + r) - x, (cy + r) - y], 2)
    in_ctr = in_ctr.min(-1).values > 0
    fg = in_box.any(0) | in_ctr.any(0)
    both = in_box[:, fg] & in_ctr[:, fg]
    ious = box_iou(gt, pred[fg])
    k = ious.shape[1]
    probs = (cls[fg].sigmoid() * obj[fg][:, None].sigmoid()).sqrt()
    one_hot = F.one_hot(labels, num_classes).float().unsqueeze(1).repeat(1, k, 1)
    bce = F.binary_cross_entropy(probs.unsqueeze(0).repeat(n, 1, 1), one_hot, reduction="none")
    cost = bce.sum(-1) + 3.0 * -torch.log(ious + 1e-8) + 100000.0 * (~both)
    matching = torch.zeros_like(cost, dtype=torch.uint8)
    ks = torch.clamp(torch.topk(ious, min(10, k), dim=1)[0].sum(1).int(), min=1).tolist()
    for g in range(n):
        matching[g][torch.topk(cost[g], k=ks[g], largest=False)[1]] = 1
    multi = matching.sum(0) > 1
    if multi.any():
        cost_argmin = cost[:, multi].argmin(0)
        matching[:, multi] *= 0
        matching[cost_argmin, multi] = 1
    positive = matching.sum(0) > 0
    fg[fg.clone()] = positive
    return fg, matching[:, positive].argmax(0), (matching * ious).sum(0)[positive]


def test_simota_matches_yolox_reference():
    torch.manual_seed(0)
    num_classes = 4
    outputs = [torch.randn(1, 5 + num_classes, s, s) * 0.5 for s in (32, 16, 8)]
    flat = flatten_outputs(outputs)[0]
    grid, stride = anchor_grid(outputs)
    pred = decode_boxes(flat[:, :4], grid, stride)
    centres = (grid + 0.5) * stride[:, None]
    for _ in range(10):
        n = int(torch.randint(1, 12, ()))
        corner = torch.rand(n, 2) * 200
        gt = torch.cat([corner, corner + torch.rand(n, 2) * 120 + 4], 1)
        labels = torch.randint(0, num_classes, (n,))
        args = (pred, flat[:, 5:], flat[:, 4], centres, stride, gt, labels)
        fg, gt_index, ious = simota_assign(*args)
        ref_fg, ref_index, ref_ious = yolox_reference_assign(*args, num_classes)
        assert torch.equal(fg, ref_fg) and torch.equal(gt_index, ref_index)
        assert torch.allclose(ious, ref_ious)
