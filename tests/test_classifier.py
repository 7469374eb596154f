"""ImageClassifier end to end on tiny data: every strategy, auto, determinism, input errors,
multi-label and regression tables, and the run directory (safetensors + JSON, never a pickle).

Pictures are scikit-image's lfw_subset (25 x 25 faces and non-faces) written as PNGs at test
time. The backbone is the bundled EfficientNet-Lite0 at its own 224 px (the estimator has no
smaller input), so the trainable strategies see ten pictures for one epoch, on the CPU. One
embedding cache serves the whole module: it is content-addressed, so sharing it only saves time.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from headstart.errors import HeadstartError
from headstart.estimators import ImageClassifier
from headstart.estimators.base import NotFittedError
from headstart.runs.store import VersionWarning
from headstart.strategies import STRATEGIES

CLASSES = ["face", "not-face"]
FAST = dict(epochs=1, batch_size=8, workers=0, device="cpu", verbose=False)
RUN_FILES = (
    "model.safetensors",
    "config.json",
    "metrics.json",
    "confusion_matrix.png",
    "report.md",
)
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin"}
STEM = "model.conv_stem.weight"


# ---- data --------------------------------------------------------------------------------------


CACHE_PER_MODULE = True  # conftest: one embedding cache for this module


@pytest.fixture(scope="session")
def lfw() -> tuple[np.ndarray, list[str]]:
    """The 200 lfw_subset pictures as uint8 arrays: 100 faces, then 100 non-faces."""
    from skimage import data

    images = (data.lfw_subset() * 255).round().astype(np.uint8)
    return images, ["face"] * 100 + ["not-face"] * 100


def write_lfw(folder: Path, lfw, indices) -> list[Path]:
    """PNGs of the chosen pictures under folder/<class>/NNN.png."""
    images, labels = lfw
    paths = []
    for index in indices:
        path = folder / labels[index] / f"{index:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[index]).save(path)
        paths.append(path)
    return paths


def per_class(first: int, count: int) -> list[int]:
    """Indices `first` .. `first + count - 1` of each class."""
    return [*range(first, first + count), *range(100 + first, 100 + first + count)]


@pytest.fixture(scope="module")
def small(tmp_path_factory, lfw) -> Path:
    """Five faces and five non-faces: 8 to train and 2 to validate with the default split."""
    folder = tmp_path_factory.mktemp("small")
    write_lfw(folder, lfw, per_class(0, 5))
    return folder


@pytest.fixture
def small_copy(tmp_path, small) -> Path:
    """A copy of `small` the test may change."""
    return Path(shutil.copytree(small, tmp_path / "data"))


def some_pictures(folder: Path) -> list[Path]:
    """Two pictures of each class."""
    return [p for c in CLASSES for p in sorted((folder / c).glob("*.png"))[:2]]


def make(strategy: str, **changes) -> ImageClassifier:
    return ImageClassifier(strategy=strategy, **{**FAST, **changes})


@pytest.fixture(scope="module")
def fitted(small, tmp_path_factory):
    """fitted(strategy) -> (classifier fitted on `small` with run_dir=None, what the fit left in
    the working directory). Each strategy is fitted once per module, in an empty folder."""
    made: dict[str, tuple[ImageClassifier, list[str]]] = {}

    def get(strategy: str):
        if strategy not in made:
            cwd = tmp_path_factory.mktemp(f"cwd-{strategy}")
            before = os.getcwd()
            os.chdir(cwd)
            try:
                clf = make(strategy).fit(small)
            finally:
                os.chdir(before)
            made[strategy] = (clf, sorted(os.listdir(cwd)))
        return made[strategy]

    return get


def no_pickles(run_dir: Path) -> None:
    found = [p for p in Path(run_dir).rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES]
    assert not found, f"pickle-format files in the run directory: {found}"


# ---- every strategy ----------------------------------------------------------------------------


IMAGE_STRATEGIES = sorted(n for n, cls in STRATEGIES.items() if "image" in cls.modalities)


@pytest.mark.parametrize("strategy", IMAGE_STRATEGIES)
def test_strategy_fits_predicts_and_round_trips(strategy, fitted, small, tmp_path, lite0):
    clf, left_in_cwd = fitted(strategy)
    assert left_in_cwd == [], "fit with run_dir=None wrote into the working directory"
    assert clf.strategy_name_ == strategy
    assert clf.task_.kind == "classification" and clf.task_.classes == CLASSES
    trains_backbone = not STRATEGIES[strategy].frozen
    assert clf.backbone_trained_ is trains_backbone

    pictures = some_pictures(small)
    labels = clf.predict(pictures)
    assert len(labels) == len(pictures) and set(labels) <= set(CLASSES)
    proba = clf.predict_proba(pictures)
    assert proba.shape == (len(pictures), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert clf.predict(str(pictures[0])) == labels[:1]  # one image file as a path

    metrics = clf.evaluate(small)
    assert metrics["n"] == 10
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["macro_f1"] <= 1.0

    # the validation metrics describe the fitted model (for trained backbones too)
    from headstart.data.sources import Source

    again = clf.evaluate(Source("image", clf.val_items_))
    assert again["n"] == clf.metrics_["n"] == 2
    assert again["log_loss"] == pytest.approx(clf.metrics_["log_loss"], abs=1e-5)

    run = clf.save(tmp_path / "run")
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    assert (run / "curves.png").is_file() is trains_backbone  # curves need training epochs
    no_pickles(run)
    saved = load_file(str(run / "model.safetensors"))
    assert any(k.startswith("head.") for k in saved)
    assert any(k.startswith("backbone.") for k in saved) is trains_backbone

    if trains_backbone:  # everything comes from safetensors + JSON: no unpickling at all
        with pytest.MonkeyPatch.context() as patch:
            for module, name in ((torch, "load"), (pickle, "load"), (pickle, "loads")):
                patch.setattr(module, name, _refuse)
            loaded = ImageClassifier.load(run)
    else:
        loaded = ImageClassifier.load(run)
    assert loaded.strategy_name_ == strategy
    np.testing.assert_allclose(loaded.predict_proba(pictures), proba, atol=1e-5)
    assert loaded.predict(pictures) == labels

    config = json.loads((run / "config.json").read_text())
    if not STRATEGIES[strategy].needs_backbone:  # pixels: a featuriser, no backbone at all
        assert config["backbone"] is None and config["head"]["kind"] == strategy
        return
    stem = clf.backbone_.state_dict()[STEM]
    pretrained_stem = lite0.state_dict()[STEM]
    if strategy == "from-scratch":  # the control: same architecture, random weights
        assert config["backbone"]["pretrained_weight_id"] == "random-init"
        assert not torch.allclose(stem, pretrained_stem, atol=0.05)
    else:
        assert config["backbone"]["pretrained_weight_id"] == lite0.weight_id
        assert torch.allclose(stem, pretrained_stem, atol=0.01)  # one small step at most
    if trains_backbone:
        assert config["backbone"]["weight_id"].startswith("tuned-")
        # head-first strategies score their start (the fitted head) as epoch 0
        first = [0] if STRATEGIES[strategy].head_first else []
        assert [e["epoch"] for e in config["history"]] == [*first, 1]
    else:
        assert config["backbone"]["weight_id"] == lite0.weight_id


def _refuse(*args, **kwargs):
    raise AssertionError("loading a run must not unpickle anything")


# ---- transfer works, auto explains itself, same seed same result -------------------------------


def test_linear_probe_on_five_faces_per_class_beats_chance(tmp_path, lfw):
    train, held_out = tmp_path / "train", tmp_path / "held_out"
    write_lfw(train, lfw, per_class(0, 30))
    write_lfw(held_out, lfw, per_class(30, 25))  # not seen in training in any way
    clf = make("linear-probe", per_class=5).fit(train, val=held_out)
    assert clf.fit_info_["class_counts"] == {"face": 5, "not-face": 5}
    assert clf.metrics_["n"] == 50
    assert clf.metrics_["accuracy"] > 0.8, clf.metrics_
    assert clf.evaluate(held_out)["accuracy"] == clf.metrics_["accuracy"]


def test_auto_records_and_prints_its_choice(small, tmp_path, capsys):
    clf = make("auto", verbose=True).fit(small, run_dir=str(tmp_path / "run"))
    assert clf.strategy == "auto"  # the parameter stays as given
    assert clf.strategy_name_ == "linear-probe" and clf.strategy_reason_
    # ten images: too few to split, so the probe's out-of-fold outputs are its validation
    assert clf.metrics_["n"] == 10 and "cross-validation" in clf.fit_info_["validation"]
    assert f"strategy auto -> linear-probe: {clf.strategy_reason_}" in capsys.readouterr().err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["strategy"]["name"] == "linear-probe"
    assert config["strategy"]["reason"] == clf.strategy_reason_
    assert config["params"]["strategy"] == "auto"
    assert clf.strategy_reason_ in (tmp_path / "run" / "report.md").read_text()


@pytest.mark.parametrize("strategy", ["linear-probe", "mlp-head", "freeze-unfreeze"])
def test_same_seed_same_data_same_metrics(strategy, fitted, small):
    first, _ = fitted(strategy)
    second = make(strategy).fit(small)  # features come from the cache this time
    assert second.metrics_ == first.metrics_

    def epochs(history):
        return [{k: v for k, v in e.items() if k != "seconds"} for e in history]

    assert epochs(second.history_) == epochs(first.history_)
    assert second.fit_info_["train_fingerprint"] == first.fit_info_["train_fingerprint"]


# ---- parameters ----------------------------------------------------------------------------------


def test_unknown_parameter_lists_allowed_names():
    with pytest.raises(HeadstartError, match="Did you mean 'epochs'") as caught:
        ImageClassifier(epoch=3)
    message = str(caught.value)
    assert "'epoch'" in message and "Allowed:" in message
    assert all(name in message for name in ("strategy", "per_class", "verbose"))
    with pytest.raises(HeadstartError, match="Did you mean 'strategy'"):
        ImageClassifier().set_params(stratgy="linear-probe")


def test_bad_strategy_lists_allowed_values(small):
    with pytest.raises(HeadstartError, match="Did you mean 'fine-tune'") as caught:
        make("finetune").fit(small)
    assert all(repr(name) in str(caught.value) for name in [*STRATEGIES, "auto"])
    with pytest.raises(HeadstartError, match="'task'"):
        make("linear-probe", task="multiclass").fit(small)


def test_params_round_trip():
    clf = ImageClassifier(strategy="mlp-head", epochs=2)
    assert clf.get_params()["strategy"] == "mlp-head" and clf.get_params()["epochs"] == 2
    assert ImageClassifier(**clf.get_params()).get_params() == clf.get_params()
    assert repr(clf) == "ImageClassifier(strategy='mlp-head', epochs=2)"


def test_use_before_fit_is_not_fitted_error(small, tmp_path):
    clf = ImageClassifier()
    for call in (clf.predict, clf.predict_proba, clf.evaluate, clf.save):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            call(small if call is not clf.save else tmp_path / "run")


# ---- awkward data ------------------------------------------------------------------------------


def test_single_class_is_a_one_line_error(tmp_path, lfw):
    write_lfw(tmp_path / "data", lfw, range(5))
    with pytest.raises(HeadstartError, match="at least two classes") as caught:
        make("linear-probe").fit(tmp_path / "data")
    assert "\n" not in str(caught.value) and "'face'" in str(caught.value)


def test_empty_class_folder_is_reported_not_fatal(small_copy, capsys):
    (small_copy / "empty").mkdir()
    clf = make("linear-probe", verbose=True).fit(small_copy)
    assert clf.task_.classes == CLASSES
    assert [(Path(s.id).name, s.reason) for s in clf.skipped_] == [
        ("empty", "empty class folder (no image files)")
    ]
    assert "empty class folder" in capsys.readouterr().err


def test_validation_labels_unseen_in_training(small, tmp_path, lfw):
    val = tmp_path / "val"
    write_lfw(val, lfw, [10])
    (val / "cat").mkdir()  # a class the training data does not have
    Image.fromarray(lfw[0][110]).save(val / "cat" / "110.png")
    with pytest.raises(HeadstartError, match=r"not seen in training") as caught:
        make("linear-probe").fit(small, val=val)
    assert "'cat'" in str(caught.value) and "\n" not in str(caught.value)


def test_unreadable_image_is_skipped_and_the_rest_trains(small_copy):
    (small_copy / "face" / "broken.png").write_text("not a picture\n")
    clf = make("linear-probe").fit(small_copy)
    assert [(Path(s.id).name, s.reason) for s in clf.skipped_] == [
        ("broken.png", "not an image (cannot identify image file)")
    ]
    assert clf.fit_info_["n_train"] + clf.fit_info_["n_val"] == 10
    assert set(clf.predict(some_pictures(small_copy))) <= set(CLASSES)


# ---- multi-label and regression tables ---------------------------------------------------------


@pytest.fixture
def table(tmp_path, lfw) -> tuple[Path, list[tuple[Path, str, float]]]:
    """16 pictures under tmp/t/img/ and, per picture, (path relative to tmp/t, class, mean
    brightness): the rows of a table written into tmp/t."""
    root = tmp_path / "t"
    images, labels = lfw
    rows = []
    for index in per_class(0, 8):
        path = write_lfw(root / "img", lfw, [index])[0]
        rows.append((path.relative_to(root), labels[index], float(images[index].mean() / 255)))
    return root, rows


def write_table(root: Path, rows: list[tuple[Path, str]]) -> Path:
    """root/labels.csv with path,label columns; the paths are relative to the table."""
    path = root / "labels.csv"
    path.write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in rows))
    return path


def test_multilabel_table(table, tmp_path):
    root, pictures = table
    median = float(np.median([b for _, _, b in pictures]))
    rows = [(p, f"{c}|bright" if b > median else c) for p, c, b in pictures]
    clf = make("linear-probe").fit(write_table(root, rows), run_dir=str(tmp_path / "run"))
    assert clf.task_.kind == "multilabel"
    assert clf.task_.classes == ["bright", "face", "not-face"]
    assert clf.thresholds_ is not None and len(clf.thresholds_) == 3
    assert {"micro_f1", "mAP", "macro_f1", "n"} <= set(clf.metrics_)
    some = [root / p for p, _, _ in pictures[:4]]
    predicted = clf.predict(some)
    assert all(set(filter(None, label.split("|"))) <= set(clf.task_.classes) for label in predicted)
    loaded = ImageClassifier.load(tmp_path / "run")
    assert loaded.task_.kind == "multilabel"
    np.testing.assert_allclose(loaded.thresholds_, clf.thresholds_)
    assert loaded.predict(some) == predicted


def test_regression_table(table):
    root, pictures = table
    rows = [(p, f"{b:.4f}") for p, _, b in pictures]
    clf = make("linear-probe").fit(write_table(root, rows))  # no --val: an unstratified split
    assert clf.task_.kind == "regression" and clf.task_.classes == []
    assert {"mse", "mae", "n"} <= set(clf.metrics_) and clf.metrics_["n"] == 3
    values = clf.predict([root / p for p, _, _ in pictures[:3]])
    assert all(isinstance(v, float) for v in values) and len(values) == 3
    assert "accuracy" not in clf.evaluate(write_table(root, rows))


# ---- the run directory -------------------------------------------------------------------------


@pytest.fixture
def run_dir(small, tmp_path) -> Path:
    run = tmp_path / "run"
    make("linear-probe").fit(small, run_dir=str(run))
    return run


def test_run_directory_contents(run_dir, lite0):
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    no_pickles(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["backbone"]["name"] == "efficientnet_lite0"
    assert config["backbone"]["weight_id"] == lite0.weight_id
    assert config["preprocess"]["type"] == "ImagePreprocess"
    assert config["preprocess"]["input_size"] == 224
    assert config["task"] == {"kind": "classification", "classes": CLASSES}
    assert config["strategy"]["name"] == "linear-probe"
    assert set(config["params"]) == set(ImageClassifier._param_names())
    assert config["params"]["strategy"] == "linear-probe"
    assert {"headstart", "torch", "timm", "scikit-learn"} <= set(config["versions"])
    assert len(config["fit"]["train_fingerprint"]) == 16
    assert config["fit"]["class_counts"] == {"face": 4, "not-face": 4}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"accuracy", "macro_f1", "n"} <= set(metrics)


def test_tampered_weights_are_refused(run_dir):
    weights = run_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(HeadstartError, match="altered or damaged"):
        ImageClassifier.load(run_dir)


def test_missing_config_is_a_clear_error(run_dir, tmp_path):
    (run_dir / "config.json").unlink()
    with pytest.raises(HeadstartError, match="not a complete run: config.json is missing"):
        ImageClassifier.load(run_dir)
    with pytest.raises(HeadstartError, match="does not exist"):
        ImageClassifier.load(tmp_path / "nowhere")


def test_other_version_warns_on_load(run_dir, small):
    path = run_dir / "config.json"
    config = json.loads(path.read_text())
    config["headstart_version"] = "0.0.1"
    path.write_text(json.dumps(config))
    with pytest.warns(VersionWarning, match="0.0.1"):
        loaded = ImageClassifier.load(run_dir)
    assert set(loaded.predict(some_pictures(small))) <= set(CLASSES)
