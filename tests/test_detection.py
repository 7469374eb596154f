"""ObjectDetector end to end: every route and strategy fits, predicts, saves and reloads; the
command line; fetching the COCO detector; what the strategies freeze; letterbox arithmetic."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from test_embed_cli import cli, ok, one_error_line

from headstart.data.boxes import Boxes
from headstart.errors import HeadstartError
from headstart.estimators import ObjectDetector
from headstart.tasks import Detection

pytestmark = pytest.mark.usefixtures("one_thread")

SHARED_ONNX = Path(__file__).resolve().parents[2] / "shared/data/weights/yolox_nano/yolox_nano.onnx"
needs_onnx = pytest.mark.skipif(
    not SHARED_ONNX.is_file(), reason=f"the shared YOLOX-Nano weights are absent ({SHARED_ONNX})"
)
SIDE = 64  # tiny images and models: the tests check plumbing, bench/detect.py the accuracy


def write_voc(folder: Path, count: int = 8, seed: int = 0) -> Path:
    """`count` noisy images, each with one or two bright squares named 'red box' or 'blue'."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    (folder / "annotations").mkdir()
    for n in range(count):
        w, h = int(rng.integers(80, 120)), int(rng.integers(60, 100))
        image = Image.fromarray(rng.integers(0, 80, (h, w, 3), dtype=np.uint8))
        draw = ImageDraw.Draw(image)
        objects = []
        for k in range(1 + n % 2):
            x, y, side = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40)), 30
            name, colour = ("red box", (250, 40, 40)) if k == 0 else ("blue", (40, 40, 250))
            draw.rectangle([x, y, x + side, y + side], fill=colour)
            objects.append(
                f"<object><name>{name}</name><bndbox><xmin>{x}</xmin><ymin>{y}</ymin>"
                f"<xmax>{x + side}</xmax><ymax>{y + side}</ymax></bndbox></object>"
            )
        image.save(folder / "images" / f"img{n}.jpg")
        (folder / "annotations" / f"img{n}.xml").write_text(
            f"<annotation><filename>img{n}.jpg</filename><size><width>{w}</width>"
            f"<height>{h}</height><depth>3</depth></size>{''.join(objects)}</annotation>"
        )
    return folder


@pytest.fixture(scope="module")
def boxes_data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("boxes")
    return write_voc(root / "train", 8, seed=0), write_voc(root / "val", 4, seed=1)


ROUTES = [
    *[("efficientnet_lite0", s) for s in ("head-only", "freeze-unfreeze", "fine-tune")],
    ("efficientnet_lite0", "from-scratch"),
    ("yolox_nano", "from-scratch"),
    pytest.param("yolox_nano", "fine-tune", marks=needs_onnx),
]


def detector(model: str, strategy: str, **extra) -> ObjectDetector:
    weights = str(SHARED_ONNX) if model == "yolox_nano" and strategy != "from-scratch" else None
    return ObjectDetector(
        model=model,
        strategy=strategy,
        epochs=2,
        size=SIDE,
        batch_size=4,
        weights=weights,
        verbose=False,
        score_threshold=0.0,
        **extra,
    )


@pytest.mark.parametrize(("model", "strategy"), ROUTES)
def test_every_route_and_strategy_fits_predicts_and_reloads(boxes_data, tmp_path, model, strategy):
    train, val = boxes_data
    est = detector(model, strategy).fit(train, val=val, run_dir=tmp_path / "run")
    assert est.classes_ == ["blue", "red box"]
    assert {"map50", "map", "n", "per_class"} <= set(est.metrics_) and est.metrics_["n"] == 4
    images = sorted((val / "images").iterdir())[:2]
    found = est.predict(images)
    assert len(found) == 2
    for boxes in found:
        for box in boxes:
            assert set(box) == {"box", "label", "score"} and box["label"] in est.classes_
            x1, y1, x2, y2 = box["box"]
            assert 0 <= x1 <= x2 and 0 <= y1 <= y2
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"model.safetensors", "config.json", "metrics.json", "report.md"} <= names
    assert {"predictions.png", "curves.png"} <= names
    again = ObjectDetector.load(tmp_path / "run")
    assert again.predict(images) == found
    assert again.evaluate(val)["map50"] == pytest.approx(est.metrics_["map50"])


def _backbone_state(est) -> dict:
    groups = est.detector_.param_groups()[: -est.detector_.head_groups]
    return {id(p): p.detach().clone() for _, params in groups for p in params}


def test_head_only_keeps_the_backbone_and_fine_tune_changes_it(boxes_data, monkeypatch):
    from headstart.engine import detection

    train, val = boxes_data
    seen = {}
    original = detection.train_detector

    def spy(det, strategy, *args, **kwargs):
        seen[strategy.name] = {
            name: [p.detach().clone() for p in params]
            for name, params in det.param_groups()[: -det.head_groups]
        }
        return original(det, strategy, *args, **kwargs)

    monkeypatch.setattr(detection, "train_detector", spy)
    for strategy in ("head-only", "fine-tune"):
        est = detector("efficientnet_lite0", strategy).fit(train, val=val)
        after = dict(est.detector_.param_groups()[: -est.detector_.head_groups])
        changed = any(
            not torch.equal(before, now)
            for name, params in seen[strategy].items()
            for before, now in zip(params, after[name], strict=True)
        )
        assert changed == (strategy == "fine-tune"), strategy


def test_from_scratch_reads_no_pretrained_weights(boxes_data, monkeypatch):
    import headstart.zoo.detectors as detectors

    def refuse(*args, **kwargs):
        raise AssertionError("from-scratch must not read pre-trained weights")

    monkeypatch.setattr(detectors, "detector_weights", refuse)
    train, val = boxes_data
    est = detector("yolox_nano", "from-scratch").fit(train, val=val)
    assert est.strategy_name_ == "from-scratch"


def test_unfetched_coco_weights_say_how_to_fetch(boxes_data, tmp_path, monkeypatch):
    monkeypatch.setenv("HEADSTART_MODELS", str(tmp_path / "models"))
    train, val = boxes_data
    with pytest.raises(HeadstartError, match="headstart fetch yolox_nano"):
        ObjectDetector(model="yolox_nano", epochs=1, verbose=False).fit(train, val=val)


@needs_onnx
def test_fetch_checks_the_pinned_sha256(tmp_path, monkeypatch):
    from headstart.zoo.detector_entries import DETECTORS, detector_weights
    from headstart.zoo.fetch import fetch

    monkeypatch.setenv("HEADSTART_MODELS", str(tmp_path / "models"))
    recipe = DETECTORS["yolox_nano"].fetch

    def copying(urls, dest: Path) -> None:
        dest.mkdir(parents=True)
        shutil.copy(SHARED_ONNX, dest / Path(urls[0]).name)

    folder = fetch(recipe, download=copying)
    assert detector_weights("yolox_nano", None) == folder / "yolox_nano.onnx"

    def damaged(urls, dest: Path) -> None:
        dest.mkdir(parents=True)
        (dest / Path(urls[0]).name).write_bytes(b"not the weights")

    with pytest.raises(HeadstartError, match="sha256"):
        fetch(recipe, download=damaged, force=True)


def test_bad_parameters_are_one_line_errors(boxes_data):
    train, val = boxes_data
    with pytest.raises(HeadstartError, match="multiple of 32"):
        ObjectDetector(model="efficientnet_lite0", size=100, verbose=False).fit(train, val=val)
    with pytest.raises(HeadstartError, match="does not apply to detection"):
        ObjectDetector(strategy="lora", verbose=False).fit(train, val=val)
    with pytest.raises(HeadstartError, match="not fitted"):
        ObjectDetector().predict([train])


def test_letterbox_scales_boxes_with_the_longer_side():
    from headstart.engine.detection import letterbox

    image = torch.zeros(3, 50, 100, dtype=torch.uint8)
    boxed, scale, boxes = letterbox(image, 64, torch.tensor([[10.0, 5.0, 60.0, 45.0]]))
    assert boxed.shape == (3, 64, 64) and scale == pytest.approx(0.64)
    assert boxes.tolist()[0] == pytest.approx([6.4, 3.2, 38.4, 28.8])
    assert boxed[:, 40:, :].eq(114 / 255).all()  # padded below the image


def test_map_of_perfect_and_empty_predictions():
    task = Detection(["a", "b"])
    truth = [Boxes(((0, 0, 10, 10), (20, 20, 40, 40)), ("a", "b")), Boxes()]
    perfect = [
        {
            "boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 40, 40]]),
            "scores": torch.tensor([0.9, 0.8]),
            "labels": torch.tensor([0, 1]),
        },
        {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0).long()},
    ]
    assert task.score_predictions(perfect, truth)["map50"] == pytest.approx(1.0)
    empty = [perfect[1], perfect[1]]
    assert task.score_predictions(empty, truth)["map50"] == pytest.approx(0.0)


def test_cli_fit_evaluate_predict(boxes_data, tmp_path):
    train, val = boxes_data
    run = tmp_path / "run"
    fitted = ok(
        cli(
            "fit", str(train), "--val", str(val), "--out", str(run), "--model",
            "efficientnet_lite0", "--epochs", "1", "--size", str(SIDE), "--batch-size", "4",
        )
    )  # fmt: skip
    assert "map50" in fitted.stdout and "strategy: fine-tune" in fitted.stderr
    scored = json.loads(ok(cli("evaluate", str(run), str(val), "--json")).stdout)
    assert {"map50", "map", "n"} <= set(scored) and scored["n"] == 4
    (tmp_path / "notes.jpg").write_text("not an image")
    image = sorted((val / "images").iterdir())[0]
    rows = json.loads(
        ok(cli("predict", str(run), str(image), str(tmp_path / "notes.jpg"), "--json")).stdout
    )
    assert rows[0]["input"] == str(image) and isinstance(rows[0]["boxes"], list)
    assert "error" in rows[1]
    line = one_error_line(cli("fit", str(train), "--out", str(run), "--strategy", "lora"))
    assert "does not apply to detection" in line


def test_rank_on_a_detection_set_scores_backbones_on_box_crops(boxes_data):
    train, _ = boxes_data
    run = ok(cli("rank", str(train), "--models", "efficientnet_lite0,random:efficientnet_lite0"))
    assert "ranking on 12 box crops and 8 background crops" in run.stderr
    assert "efficientnet_lite0" in run.stdout


def test_compare_on_a_detection_set_fits_each_strategy(boxes_data, tmp_path):
    train, val = boxes_data
    out = tmp_path / "cmp"
    run = ok(
        cli(
            "compare", str(train), "--val", str(val), "--out", str(out), "--model",
            "efficientnet_lite0", "--strategies", "head-only,from-scratch", "--epochs", "1",
        )
    )  # fmt: skip
    assert "head-only: map50" in run.stdout and "from-scratch: map50" in run.stdout
    assert {"results.csv", "compare.png", "report.md"} <= {p.name for p in out.iterdir()}


def test_augmentation_moves_the_boxes_with_the_pixels(tmp_path):
    """Flips, crops, zoom-outs and the multi-scale letterbox keep a white square inside its
    box: the bright pixels' extent matches the transformed box in every drawn sample (colour
    changes left out: they move no pixel and would blur 'bright')."""
    from torchvision.transforms import v2

    from headstart.data.sources import Item
    from headstart.engine.detection import _Batches, _Images

    image = Image.new("RGB", (120, 80))
    ImageDraw.Draw(image).rectangle([70, 20, 109, 59], fill=(255, 255, 255))
    image.save(tmp_path / "a.png")
    item = Item("a", tmp_path / "a.png", target=Boxes(((70, 20, 110, 60),), ("a",)))
    data = _Images([item], Detection(["a"]), augment=True)
    kept = [t for t in data.transform.transforms if not isinstance(t, v2.RandomPhotometricDistort)]
    assert len(kept) == len(data.transform.transforms) - 1
    data.transform = v2.Compose(kept)
    batches = _Batches((64, 96, 128), training=True, seed=0)
    torch.manual_seed(0)
    for _ in range(25):
        images, targets = batches([data[0]])
        (x1, y1, x2, y2), bright = targets[0]["boxes"][0].tolist(), images[0].mean(0) > 0.75
        rows, cols = torch.nonzero(bright, as_tuple=True)
        found = (cols.min().item(), rows.min().item(), cols.max().item() + 1, rows.max().item() + 1)
        assert found == pytest.approx((x1, y1, x2, y2), abs=2.5)


def test_bad_boxes_are_reported_one_line_each(tmp_path):
    train = write_voc(tmp_path / "train", 6)
    xml = train / "annotations" / "img0.xml"
    xml.write_text(xml.read_text().replace("<xmin>", "<xmin>-40").replace("-40", "-4", 1))
    (train / "annotations" / "ghost.xml").write_text(
        "<annotation><filename>ghost.jpg</filename><object><name>blue</name><bndbox><xmin>1"
        "</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>"
    )
    run = ok(
        cli(
            "fit", str(train), "--out", str(tmp_path / "run"), "--model", "efficientnet_lite0",
            "--epochs", "1", "--size", str(SIDE), "--val-fraction", "0.34",
        )
    )  # fmt: skip
    assert "image 'ghost.jpg' not found" in run.stderr
    assert "img0.xml: 1 box outside the image clipped" in run.stderr


def test_classifier_options_are_refused_for_detection(boxes_data, tmp_path):
    train, _ = boxes_data
    args = ("fit", str(train), "--out", str(tmp_path / "run"), "--per-class", "3", "--resume")
    line = one_error_line(cli(*args))
    assert "--per-class, --resume do not apply to detection" in line
