"""Tasks as objects: typed targets, heads, decoding, and metric values equal to scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as sk

from headstart.data.sources import Item, Source
from headstart.errors import HeadstartError
from headstart.report import compute_metrics
from headstart.tasks import (
    TASKS,
    Classification,
    MultiLabel,
    Regression,
    Task,
    get_task,
    pooled_tasks,
    task_choices,
)


def test_registry_names_and_choices():
    names = ["classification", "detection", "multilabel", "regression", "segmentation"]
    assert list(TASKS) == names
    assert task_choices() == ("auto", *names)
    assert pooled_tasks() == ("classification", "multilabel", "regression")
    assert type(get_task("multilabel", ["a", "b"])) is MultiLabel
    with pytest.raises(HeadstartError, match="'task' parameter"):
        get_task("ner", [])


@pytest.mark.parametrize(
    ("labels", "kind", "classes"),
    [
        (["cat", "dog", "cat"], Classification, ["cat", "dog"]),
        (["10", "2", "1"], Classification, ["1", "2", "10"]),  # natural order
        (["b|a", "c", "a"], MultiLabel, ["a", "b", "c"]),
        (["0.5", "1.25", "3"], Regression, []),
    ],
)
def test_auto_detection(labels, kind, classes):
    task = Task.from_labels(labels)
    assert type(task) is kind and task.classes == classes and task.kind == kind.name


def test_typed_targets_and_arrays():
    cls = Classification(["cat", "dog"])
    assert cls.parse("dog") == "dog"
    assert cls.targets(["dog", "cat"]).dtype == np.int64
    ml = MultiLabel(["a", "b", "c"])
    assert ml.parse(" b | a |") == frozenset({"a", "b"})
    assert ml.targets(["a|c", "zz"]).tolist() == [[1, 0, 1], [0, 0, 0]]  # unseen: left out
    reg = Regression()
    assert reg.parse("2.5") == 2.5
    assert reg.targets(["1", "2.5"]).dtype == np.float32


def test_the_same_one_line_errors():
    with pytest.raises(HeadstartError, match=r"Labels \['bird'\] were not seen in training"):
        Classification(["cat", "dog"]).targets(["bird", "cat"])
    with pytest.raises(HeadstartError, match="needs numeric labels; got 'x'"):
        Task.from_labels(["1.5", "x"], "regression")
    with pytest.raises(HeadstartError, match="at least two classes"):
        Task.from_labels(["cat", "cat"])
    with pytest.raises(HeadstartError, match="at least two classes"):
        Task.from_labels(["a|a", "a"], "multilabel")


def test_items_carry_typed_targets_without_changing_the_given_ones():
    items = [Item("1", label="a|b"), Item("2", label="c")]
    source = Source("text", items)
    task = Task.from_labels([i.label for i in items])
    attached = task.attach(source)
    assert [i.target for i in attached.items] == [frozenset({"a", "b"}), frozenset({"c"})]
    assert [i.label for i in attached.items] == ["a|b", "c"]  # the raw label stays
    assert items[0].target is None  # copies: the caller's items are untouched
    assert np.array_equal(task.targets(attached.items), task.targets(["a|b", "c"]))
    # a target another task parsed is not taken for this one's
    stale = [Item("1", label="2", target="2")]
    assert Regression().targets(stale).tolist() == [2.0]
    with pytest.raises(HeadstartError, match="not seen in training"):
        Classification(["a", "b"]).attach(Source("text", [Item("1", label="z")]))


@pytest.mark.parametrize(
    ("task", "shape"), [(Classification(["a", "b", "c"]), 3), (Regression(), 1)]
)
def test_build_head_and_needs(task, shape):
    head = task.build_head(8, hidden=4, dropout=0.1)
    assert head(torch.zeros(2, 8)).shape == (2, shape)
    assert head.spec() == {"in_dim": 8, "out_dim": shape, "hidden": 4, "dropout": 0.1}
    assert task.needs == "pooled"


def test_decode_gives_what_predict_returns():
    probs = np.array([[0.2, 0.8], [0.9, 0.1]])
    assert Classification(["cat", "dog"]).decode(probs) == ["dog", "cat"]
    ml = MultiLabel(["a", "b"])
    assert ml.decode(np.array([[0.6, 0.4], [0.1, 0.2]])) == ["a", ""]
    assert ml.decode(np.array([[0.6, 0.4]]), np.array([0.7, 0.3])) == ["b"]
    assert ml.parse(ml.decode(np.array([[0.9, 0.9]]))[0]) == frozenset({"a", "b"})
    assert Regression().decode(np.array([1.5, 2.0])) == [1.5, 2.0]


# ---- metric values against scikit-learn on random data ------------------------------------------


def test_classification_metrics_equal_sklearn():
    rng = np.random.default_rng(0)
    n, c = 60, 5
    probs = rng.dirichlet(np.ones(c), size=n)
    y = rng.integers(0, c - 1, size=n)  # the last class never occurs in the targets
    m = compute_metrics(Classification(list("abcde")), y, probs)
    pred = probs.argmax(1)
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, pred), abs=1e-12)
    assert m["macro_f1"] == pytest.approx(sk.f1_score(y, pred, average="macro"), abs=1e-9)
    assert m["log_loss"] == pytest.approx(sk.log_loss(y, probs, labels=range(c)), abs=1e-9)
    p, r, f, s = sk.precision_recall_fscore_support(y, pred, labels=range(c), zero_division=0)
    got = np.array(
        [[v["precision"], v["recall"], v["f1"], v["support"]] for v in m["per_class"].values()]
    )
    assert got == pytest.approx(np.stack([p, r, f, s], axis=1), abs=1e-9)
    assert m["confusion_matrix"] == sk.confusion_matrix(y, pred, labels=range(c)).tolist()


def test_multilabel_metrics_equal_sklearn():
    rng = np.random.default_rng(1)
    n, k = 50, 4
    probs = np.round(rng.random((n, k)), 2)  # ties, as real probabilities have
    truth = (rng.random((n, k)) > 0.6).astype(np.float32)
    truth[:, 3] = 0  # a label without positives: no AP, left out of mAP
    thresholds = np.array([0.3, 0.5, 0.7, 0.95])
    m = compute_metrics(MultiLabel(list("wxyz")), truth, probs, thresholds)
    pred = (probs >= thresholds).astype(int)
    t = truth.astype(int)
    assert m["micro_f1"] == pytest.approx(sk.f1_score(t, pred, average="micro"), abs=1e-9)
    assert m["macro_f1"] == pytest.approx(sk.f1_score(t, pred, average="macro"), abs=1e-9)
    assert m["subset_accuracy"] == pytest.approx(sk.accuracy_score(t, pred), abs=1e-12)
    aps = [sk.average_precision_score(t[:, j], probs[:, j]) for j in range(3)]
    assert m["mAP"] == pytest.approx(np.mean(aps), abs=1e-9)
    assert [v["ap"] for v in m["per_label"].values()] == pytest.approx([*aps, None], abs=1e-9)
    p, r, f, s = sk.precision_recall_fscore_support(
        t, pred, average=None, labels=range(k), zero_division=0
    )
    got = np.array(
        [[v["precision"], v["recall"], v["f1"], v["support"]] for v in m["per_label"].values()]
    )
    assert got == pytest.approx(np.stack([p, r, f, s], axis=1), abs=1e-9)
    assert [v["threshold"] for v in m["per_label"].values()] == thresholds.tolist()


def test_regression_metrics_equal_sklearn():
    rng = np.random.default_rng(2)
    y = rng.normal(3, 2, size=40)
    out = y + rng.normal(0, 0.5, size=40)
    m = compute_metrics(Regression(), y, out[:, None])
    assert m["mse"] == pytest.approx(sk.mean_squared_error(y, out), abs=1e-9)
    assert m["mae"] == pytest.approx(sk.mean_absolute_error(y, out), abs=1e-9)
    assert m["rmse"] == pytest.approx(np.sqrt(sk.mean_squared_error(y, out)), abs=1e-9)
    assert m["r2"] == pytest.approx(sk.r2_score(y, out), abs=1e-9)
    # constant targets: sklearn's 1.0 (exact) / 0.0 rule, whatever their scale
    const = np.full(5, 1e-3)
    assert compute_metrics(Regression(), const, const)["r2"] == 1.0
    assert compute_metrics(Regression(), const, const + 1e-6)["r2"] == 0.0


@pytest.mark.parametrize(
    ("task", "targets", "logits"),
    [
        (Classification(["a", "b", "c"]), [0, 2, 1, 1], torch.randn(4, 3)),
        (MultiLabel(["a", "b"]), [[1, 0], [1, 1], [0, 0], [0, 1]], torch.randn(4, 2)),
        (Regression(), [0.5, 1.0, -1.0, 2.0], torch.randn(4, 1)),
    ],
)
def test_headline_is_what_the_report_says(task, targets, logits):
    """The numbers a history reports (val_accuracy, val_f1, val_mae) are the report's."""
    targets = np.array(targets, dtype=np.float32 if task.kind != "classification" else np.int64)
    outputs = task.probabilities(logits)
    headline = task.headline(outputs, targets)
    report = compute_metrics(task, targets, outputs.numpy())
    assert list(headline) == list(task.history.values())
    for key, name in task.history.items():
        assert headline[name] == pytest.approx(report[key], abs=1e-6)
