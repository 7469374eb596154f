import json

import numpy as np
import pytest
from PIL import Image

from headstart.errors import HeadstartError
from headstart.report import (
    best_thresholds,
    compute_metrics,
    confusion_matrix_png,
    curves_png,
    worst_examples,
    write_report,
)
from headstart.tasks import get_task

CLS = get_task("classification", ["a", "b", "c"])
# argmax -> [a, b, b, c] against truth [a, a, b, c]: 3 of 4 right.
CLS_TARGETS = np.array([0, 0, 1, 2])
CLS_PROBS = np.array(
    [
        [0.8, 0.1, 0.1],
        [0.3, 0.6, 0.1],
        [0.2, 0.7, 0.1],
        [0.1, 0.1, 0.8],
    ]
)
ML = get_task("multilabel", ["x", "y", "z"])


def as_json(metrics: dict) -> dict:
    return json.loads(json.dumps(metrics, allow_nan=False))


# --- metrics -----------------------------------------------------------------------------------


def test_classification_known_answers():
    m = compute_metrics(CLS, CLS_TARGETS, CLS_PROBS)
    assert as_json(m) == m
    assert m["n"] == 4
    assert m["accuracy"] == pytest.approx(0.75)
    # a: P=1 R=1/2 F1=2/3; b: P=1/2 R=1 F1=2/3; c: F1=1  ->  macro (2/3 + 2/3 + 1) / 3 = 7/9
    assert m["macro_f1"] == pytest.approx(7 / 9)
    assert m["per_class"]["a"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    )
    assert m["per_class"]["b"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1}
    )
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert m["classes"] == ["a", "b", "c"]
    expected_loss = -np.mean(np.log([0.8, 0.3, 0.7, 0.8]))
    assert m["log_loss"] == pytest.approx(expected_loss)


def test_classification_clips_zero_probability():
    probs = np.array([[1.0, 0.0], [0.0, 1.0]])
    m = compute_metrics(get_task("classification", ["p", "q"]), np.array([1, 1]), probs)
    assert np.isfinite(m["log_loss"]) and m["log_loss"] > 10
    assert m["accuracy"] == 0.5


def test_classification_absent_class_does_not_crash():
    task = get_task("classification", ["a", "b", "c", "never"])
    probs = np.hstack([CLS_PROBS, np.zeros((4, 1))])
    m = compute_metrics(task, CLS_TARGETS, probs)
    assert m["per_class"]["never"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert len(m["confusion_matrix"]) == 4 and all(len(r) == 4 for r in m["confusion_matrix"])
    assert m["confusion_matrix"][3] == [0, 0, 0, 0]
    assert m["macro_f1"] == pytest.approx(7 / 9)  # over classes seen in data or predictions
    assert as_json(m) == m


def test_classification_bad_shapes_are_clear_errors():
    with pytest.raises(HeadstartError, match="N x 3"):
        compute_metrics(CLS, CLS_TARGETS, CLS_PROBS[:, :2])
    with pytest.raises(HeadstartError, match="class indices"):
        compute_metrics(CLS, np.array([0, 1, 2, 5]), CLS_PROBS)
    with pytest.raises(HeadstartError, match="no examples"):
        compute_metrics(CLS, np.array([], dtype=int), np.zeros((0, 3)))


def test_multilabel_known_answers():
    targets = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float32)
    probs = np.array([[0.9, 0.2, 0.1], [0.8, 0.4, 0.1], [0.3, 0.7, 0.6], [0.1, 0.1, 0.2]])
    m = compute_metrics(ML, targets, probs)
    assert as_json(m) == m
    assert m["n"] == 4
    # Predictions at 0.5: [x], [x], [y, z], [] -> rows 0, 3 exact; row 1 misses y; row 2 extra z.
    assert m["subset_accuracy"] == pytest.approx(0.5)
    # micro: tp=3 (x, x, y), fp=1 (z), fn=1 (y) -> 2*3 / (6 + 1 + 1)
    assert m["micro_f1"] == pytest.approx(6 / 8)
    # x: F1 1; y: P=1 R=1/2 F1=2/3; z: no positives but predicted once -> F1 0
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    # x and y are perfectly ranked; z has no positives and is left out of mAP.
    assert m["mAP"] == pytest.approx(1.0)
    assert m["per_label"]["z"]["ap"] is None
    assert m["per_label"]["y"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "ap": 1.0, "threshold": 0.5, "support": 2}
    )


def test_multilabel_map_imperfect_ranking_and_thresholds():
    targets = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
    probs = np.array([[0.9, 0.3], [0.8, 0.35], [0.4, 0.1], [0.1, 0.05]])
    # Label 0 ranking: 0.9 (pos), 0.8 (neg), 0.4 (pos) -> AP = (1 + 2/3) / 2
    m = compute_metrics(get_task("multilabel", ["p", "q"]), targets, probs, np.array([0.3, 0.32]))
    assert m["per_label"]["p"]["ap"] == pytest.approx(5 / 6)
    assert m["mAP"] == pytest.approx((5 / 6 + 1.0) / 2)
    assert m["per_label"]["q"]["threshold"] == pytest.approx(0.32)
    assert m["per_label"]["q"]["f1"] == pytest.approx(1.0)  # only the positive is over 0.32
    with pytest.raises(HeadstartError, match="one threshold per label"):
        compute_metrics(get_task("multilabel", ["p", "q"]), targets, probs, np.array([0.5]))


def test_multilabel_no_positives_at_all():
    m = compute_metrics(ML, np.zeros((2, 3)), np.full((2, 3), 0.1))
    assert m["mAP"] is None
    assert m["subset_accuracy"] == 1.0
    assert as_json(m) == m


def test_best_thresholds():
    targets = np.array([[1, 0, 1], [1, 0, 1], [0, 0, 0], [0, 0, 0]])
    probs = np.array([[0.3, 0.9, 0.8], [0.35, 0.2, 0.9], [0.1, 0.4, 0.1], [0.2, 0.1, 0.6]])
    t = best_thresholds(targets, probs)
    # label 0: F1 = 1 for thresholds in (0.2, 0.3] -> 0.25 or 0.30; nearest 0.5 wins.
    # label 1: no positives -> 0.5. label 2: F1 = 1 for (0.6, 0.8] -> 0.65.
    np.testing.assert_allclose(t, [0.3, 0.5, 0.65])
    assert t.shape == (3,)
    m = compute_metrics(ML, targets, probs, t)
    assert m["per_label"]["x"]["f1"] == 1.0 and m["per_label"]["z"]["f1"] == 1.0


def test_regression_known_answers():
    m = compute_metrics(
        get_task("regression", []), np.array([1, 2, 3, 4.0]), np.array([1, 2, 3, 6.0])
    )
    assert as_json(m) == m
    assert m == pytest.approx(
        {"task": "regression", "n": 4, "mse": 1.0, "mae": 0.5, "rmse": 1.0, "r2": 0.2}
    )
    single = compute_metrics(get_task("regression", []), np.array([2.0]), np.array([[3.0]]))
    assert single["mse"] == 1.0 and single["r2"] is None


# --- plots -------------------------------------------------------------------------------------


def check_png(path):
    assert path.exists() and path.stat().st_size > 5_000
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width > 300 and height > 300
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_confusion_matrix_png(tmp_path):
    names = ["golden retriever", "german shepherd", "labrador", "husky", "border collie"]
    cm = np.arange(25).reshape(5, 5)
    out = confusion_matrix_png(cm, names, tmp_path / "cm.png", title="Validation")
    assert out == tmp_path / "cm.png"
    check_png(out)
    check_png(confusion_matrix_png([[3, 0], [1, 2]], ["cat", "dog"], tmp_path / "cm2.png"))
    many = [f"class number {i} with a rather long name" for i in range(30)]
    check_png(confusion_matrix_png(np.eye(30, dtype=int) * 7, many, tmp_path / "cm30.png"))
    with pytest.raises(ValueError):
        confusion_matrix_png(cm, names[:3], tmp_path / "bad.png")


def test_curves_png(tmp_path):
    history = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "val_accuracy": 1 - 0.5 / e}
        for e in range(1, 6)
    ]
    check_png(curves_png(history, tmp_path / "curves.png", title="Fine-tune"))
    regression = [{"epoch": 1, "train_loss": 2.0, "val_loss": 2.5, "val_mae": 1.1}]
    check_png(curves_png(regression, tmp_path / "reg" / "curves.png"))
    check_png(curves_png([], tmp_path / "empty.png"))


# --- report ------------------------------------------------------------------------------------


def test_worst_examples_classification():
    worst = worst_examples(CLS, ["i0", "i1", "i2", "i3"], CLS_TARGETS, CLS_PROBS, k=2)
    assert [w["id"] for w in worst] == ["i1", "i2"]  # p(true) 0.3, then 0.7
    assert worst[0] == pytest.approx(
        {"id": "i1", "true": "a", "predicted": "b", "confidence": 0.6, "true_probability": 0.3}
    )
    assert worst_examples(CLS, [], np.array([]), np.zeros((0, 3))) == []


def test_worst_examples_multilabel_and_regression():
    targets = np.array([[1, 0, 0], [0, 1, 1]])
    probs = np.array([[0.9, 0.1, 0.0], [0.6, 0.2, 0.9]])
    worst = worst_examples(ML, [10, 11], targets, probs, k=5)
    assert [w["id"] for w in worst] == ["11", "10"]
    assert worst[0] == pytest.approx({"id": "11", "true": "y|z", "predicted": "x|z", "error": 1.5})
    reg = worst_examples(
        get_task("regression", []),
        ["a", "b", "c"],
        np.array([1.0, 2, 3]),
        np.array([1.5, 2, 0]),
        k=2,
    )
    assert reg == [
        {"id": "c", "true": 3.0, "predicted": 0.0, "error": 3.0},
        {"id": "a", "true": 1.0, "predicted": 1.5, "error": 0.5},
    ]


def test_write_report_classification(tmp_path):
    metrics = compute_metrics(CLS, CLS_TARGETS, CLS_PROBS)
    worst = worst_examples(
        CLS, ["img_0.jpg", "img_1.jpg", "img_2.jpg", "img_3.jpg"], CLS_TARGETS, CLS_PROBS, k=2
    )
    png = confusion_matrix_png(metrics["confusion_matrix"], CLS.classes, tmp_path / "cm.png")
    summary = {"model": "resnet18", "strategy": "frozen", "train size": 40, "seconds": 12.5}
    out = write_report(
        tmp_path / "report.md",
        title="Run 1",
        summary=summary,
        metrics=metrics,
        task=CLS,
        worst=worst,
        images=[str(png), "curves.png"],
    )
    text = out.read_text()
    assert text.startswith("# Run 1\n")
    assert "| model | resnet18 |" in text and "| seconds | 12.5000 |" in text
    assert "| Accuracy | 0.7500 |" in text and "| Macro F1 | 0.7778 |" in text
    assert "| a | 1.0000 | 0.5000 | 0.6667 | 2 |" in text
    assert "| c | 1.0000 | 1.0000 | 1.0000 | 1 |" in text
    assert "| img_1.jpg | a | b | 0.6000 | 0.3000 |" in text
    assert "![cm](cm.png)" in text and "![curves](curves.png)" in text
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_write_report_multilabel_and_regression(tmp_path):
    targets = np.array([[1, 0, 0], [0, 1, 1]])
    probs = np.array([[0.9, 0.1, 0.0], [0.6, 0.2, 0.9]])
    metrics = compute_metrics(ML, targets, probs)
    worst = worst_examples(ML, ["p1", "p2"], targets, probs)
    text = write_report(
        tmp_path / "ml.md",
        title="Tags",
        summary={},
        metrics=metrics,
        task=ML,
        worst=worst,
        images=[],
    ).read_text()
    assert "## Per-label results" in text
    assert "| x | 0.5000 | 1.0000 | 0.6667 | 1.0000 | 0.5000 | 1 |" in text
    assert "| p2 | y\\|z | x\\|z | 1.5000 |" in text  # pipes escaped inside table cells

    task = get_task("regression", [])
    metrics = compute_metrics(task, np.array([1, 2, 3, 4.0]), np.array([1, 2, 3, 6.0]))
    worst = worst_examples(task, ["a", "b", "c", "d"], [1, 2, 3, 4.0], [1, 2, 3, 6.0], k=1)
    text = write_report(
        tmp_path / "sub" / "reg.md",
        title="Prices",
        summary={"model": "m"},
        metrics=metrics,
        task=task,
        worst=worst,
        images=["curves.png"],
    ).read_text()
    assert "| MSE | 1.0000 |" in text and "| R² | 0.2000 |" in text
    assert "| d | 4.0000 | 6.0000 | 2.0000 |" in text
    assert "Per-class" not in text
