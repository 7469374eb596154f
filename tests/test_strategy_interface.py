"""The Strategy interface: every registered strategy implements it, lora and contrastive fit
without any estimator, and the no-transfer featurisers (tfidf, pixels) round-trip their state."""

from __future__ import annotations

import hashlib
import inspect
import json

import numpy as np
import pytest
import torch
from conftest import save_tiny_bert
from PIL import Image
from safetensors.torch import load_file, save_file

from headstart.data.sources import source_from_texts
from headstart.engine.train import TrainConfig, TrainData
from headstart.errors import HeadstartError
from headstart.featurisers import (
    FEATURISERS,
    PixelsFeaturiser,
    TfidfFeaturiser,
    get_featuriser,
    load_featuriser,
)
from headstart.heads import Task
from headstart.strategies import STRATEGIES, Strategy, get_strategy

FLAGS = ("needs_backbone", "pretrained", "needs_probe", "head_first", "frozen")
METHODS = (
    "build",
    "fit",
    "features",
    "logits",
    "optimizer_groups",
    "group_rates",
    "trainable_groups",
    "saved_tensors",
    "saved_files",
    "restore",
    "trained_parameters",
    "describe",
    "fit_info",
)
GONE = ("adapt", "classic", "backbone_tensors", "fit_model", "load_model", "write_files")


# ---- the interface, for every registered strategy ----------------------------------------------


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_implements_the_interface(name):
    cls = STRATEGIES[name]
    assert issubclass(cls, Strategy) and cls.name == name
    for flag in FLAGS:
        assert isinstance(getattr(cls, flag), bool), flag
    strategy = cls()
    for method in METHODS:
        base = inspect.signature(getattr(Strategy, method))
        mine = inspect.signature(getattr(cls, method))
        assert list(mine.parameters) == list(base.parameters), (name, method)
    for old in GONE:  # the hooks the estimator, runs/ and compare/ used to probe for
        assert not hasattr(strategy, old), (name, old)
    assert strategy.describe()["name"] == name
    assert isinstance(strategy.fit_info(), dict)
    # what the flags promise holds together
    if not cls.needs_backbone:
        assert cls.frozen and not cls.needs_probe
    if not cls.pretrained:
        assert not cls.needs_probe and not cls.frozen
    if cls.head_first:
        assert cls.needs_probe


def test_frozen_strategies_save_nothing_of_the_backbone():
    for name in ("linear-probe", "mlp-head"):
        strategy = get_strategy(name)
        assert strategy.saved_tensors(backbone=None) == {}
        assert strategy.trained_parameters(backbone=None) == 0


def test_linear_probe_and_mlp_head_fit_on_features_alone():
    rng = np.random.default_rng(0)
    features = np.concatenate([rng.normal(0, 1, (10, 4)), rng.normal(3, 1, (10, 4))])
    features = features.astype(np.float32)
    task = Task.from_labels(["a"] * 10 + ["b"] * 10)
    targets = np.array([0] * 10 + [1] * 10)
    data = TrainData([], targets, features)
    cfg = TrainConfig(seed=0)
    for name in ("linear-probe", "mlp-head"):
        backbone, head, history = get_strategy(name).fit("untouched", None, task, data, None, cfg)
        assert backbone == "untouched" and history == []
        with torch.no_grad():
            predicted = head(torch.from_numpy(features)).argmax(-1).numpy()
        assert (predicted == targets).mean() >= 0.9, name
    with pytest.raises(HeadstartError, match="cached features"):
        get_strategy("linear-probe").fit(None, None, task, TrainData([], targets), None, cfg)


# ---- lora and contrastive, given plain data: no estimator anywhere -----------------------------

WORDS = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "cat",
    "dog",
    "mat",
    "markets",
    "fell",
    "rose",
]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("tiny_bert_interface")
    return save_tiny_bert(folder, WORDS, intermediate_size=64, max_positions=32)


def toy_data() -> tuple[Task, TrainData]:
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for index in range(16):
        money = index % 2 == 1
        words = ["markets", "fell", "rose"] if money else ["cat", "dog", "mat"]
        texts.append(" ".join(rng.choice(words, size=4)))
        labels.append("money" if money else "pets")
    task = Task.from_labels(labels)
    items = task.attach(source_from_texts(texts, labels)).items
    return task, TrainData(items, task.targets(items))


CFG = TrainConfig(epochs=1, batch_size=8, seed=0, device="cpu", workers=0, progress=False)


def test_lora_fits_a_backbone_without_any_estimator(tiny_bert):
    task, data = toy_data()
    lora = get_strategy("lora:r=2,alpha=4,merge=false")
    backbone = lora.build(tiny_bert, "text")
    before = {k: v.clone() for k, v in backbone.get().model.state_dict().items()}
    steps = []
    backbone, head, history = lora.fit(
        backbone, None, task, data, None, CFG, progress=lambda done, total: steps.append(done)
    )
    assert [e["epoch"] for e in history] == [1] and steps and steps[-1] == 2  # 16 items / 8
    after = backbone.model.state_dict()
    for key, value in before.items():  # merge=false: the pre-trained weights are untouched
        base_key = key.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        same = after.get(key, after.get(base_key))
        assert same is not None and torch.equal(same, value), key
    saved = lora.saved_tensors(backbone)
    assert saved and all(k.startswith("adapter.") and "lora_" in k for k in saved)
    assert lora.trained_parameters(backbone) == sum(t.numel() for t in saved.values())
    assert head(torch.zeros(1, 32)).shape == (1, 2)


def test_contrastive_fits_a_backbone_without_any_estimator(tiny_bert):
    task, data = toy_data()
    contrastive = get_strategy("contrastive:max_pairs=16,batch=8")
    backbone = contrastive.build(tiny_bert, "text")
    before = {k: v.clone() for k, v in backbone.get().model.state_dict().items()}
    steps = []
    backbone, head, history = contrastive.fit(
        backbone, None, task, data, None, CFG, progress=lambda done, total: steps.append(total)
    )
    assert len(history) == 1 and history[0]["pairs"] == 16
    assert steps == [2, 2]  # 16 pairs in batches of 8
    changed = [k for k, v in backbone.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "the encoder did not train"
    assert contrastive.fit_info()["pairs"] == 16 and "probe" in contrastive.fit_info()
    assert head(torch.zeros(3, 32)).shape == (3, 2)
    with pytest.raises(HeadstartError, match="single-label classification"):
        regression = Task.from_labels(["1.5", "2.0"], "regression")
        contrastive.fit(backbone, None, regression, data, None, CFG)


# ---- featurisers -------------------------------------------------------------------------------

TEXTS = ["a wonderful film", "a dull film", "wonderful acting, a wonderful story", "dull, dull"]


def test_tfidf_featuriser_round_trips_through_json_and_safetensors(tmp_path):
    tfidf = TfidfFeaturiser().fit(TEXTS)
    rows = tfidf.transform(TEXTS + ["never seen words"])
    assert rows.shape == (5, tfidf.dim) and "wonderful film" in tfidf.terms
    assert rows[4].nnz == 0 and abs(np.sqrt(rows[0].multiply(rows[0]).sum()) - 1) < 1e-12
    files = tfidf.save(tmp_path)
    assert set(files) == {"tfidf.json", "tfidf.safetensors"}
    assert not list(tmp_path.glob("*.pkl"))
    loaded = load_featuriser(tmp_path, "tfidf")
    assert loaded.terms == tfidf.terms
    assert (abs(loaded.transform(TEXTS) - tfidf.transform(TEXTS))).max() == 0
    # the same rows as scikit-learn's TfidfVectorizer with the same settings
    from sklearn.feature_extraction.text import TfidfVectorizer

    reference = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit_transform(TEXTS)
    assert abs(tfidf.transform(TEXTS) - reference).max() < 1e-12


def test_tfidf_featuriser_refuses_no_words_and_an_unfitted_transform():
    with pytest.raises(HeadstartError, match="no words"):
        TfidfFeaturiser().fit(["a", "!"])
    with pytest.raises(HeadstartError, match="not fitted"):
        TfidfFeaturiser().transform(TEXTS)


def write_images(folder, count: int = 6) -> list:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"{index}.png"
        Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_pixels_featuriser_round_trips_and_standardises(tmp_path):
    paths = write_images(tmp_path / "images")
    raw = PixelsFeaturiser(side=8, standardise=False).fit(paths).transform(paths)
    assert raw.shape == (6, 8 * 8 * 3) and raw.min() >= 0.0 and raw.max() <= 1.0
    pixels = PixelsFeaturiser(side=8, grey=True).fit(paths)
    rows = pixels.transform(paths)
    assert rows.shape == (6, 64) and pixels.about == "raw pixels 8x8 grey"
    np.testing.assert_allclose(rows.mean(axis=0), 0.0, atol=1e-9)
    pixels.save(tmp_path / "saved")
    loaded = load_featuriser(tmp_path / "saved", "pixels")
    assert (loaded.side, loaded.grey) == (8, True)
    np.testing.assert_array_equal(loaded.transform(paths), rows)
    (tmp_path / "saved" / "pixels.safetensors").unlink()
    with pytest.raises(HeadstartError, match="missing"):
        load_featuriser(tmp_path / "saved", "pixels")
    with pytest.raises(HeadstartError, match="between 4 and 128"):
        get_featuriser("pixels", side=2)
    assert set(FEATURISERS) == {"tfidf", "pixels", "mfcc"}


def test_mfcc_featuriser_round_trips_and_standardises(tmp_path):
    from audio_files import tone, write_wav

    paths = [write_wav(tmp_path / f"{i}.wav", tone(200 + 150 * i, 0.4, seed=i)) for i in range(5)]
    raw = get_featuriser("mfcc", standardise=False).fit(paths).transform(paths)
    assert raw.shape == (5, 80) and np.isfinite(raw).all()
    mfcc = get_featuriser("mfcc", coefficients=13).fit(paths)
    rows = mfcc.transform(paths)
    assert rows.shape == (5, 52)
    np.testing.assert_allclose(rows.mean(axis=0), 0.0, atol=1e-9)
    mfcc.save(tmp_path / "saved")
    loaded = load_featuriser(tmp_path / "saved", "mfcc")
    np.testing.assert_array_equal(loaded.transform(paths), rows)
    (tmp_path / "bad.wav").write_text("not audio")
    with pytest.raises(HeadstartError, match="bad.wav.*not a readable audio file"):
        mfcc.transform([tmp_path / "bad.wav"])


def test_a_pixels_run_saved_before_the_featurisers_still_loads(tmp_path):
    """The first pixels runs kept side/grey in the head spec and shift/scale among the head's
    tensors, with no pixels.json: rewrite a new run into that layout and load it."""
    from headstart.estimators import ImageClassifier

    paths = write_images(tmp_path / "a", 4) + write_images(tmp_path / "b", 4)
    labels = ["a"] * 4 + ["b"] * 4
    clf = ImageClassifier(strategy="pixels:side=8", verbose=False, val_fraction=0.25)
    clf.fit([str(p) for p in paths], labels, run_dir=tmp_path / "run")
    run = tmp_path / "run"
    tensors = load_file(str(run / "model.safetensors"))
    old = {k: v for k, v in tensors.items() if k.startswith("head.")}
    old.update({f"head.{k[11:]}": v for k, v in tensors.items() if k.startswith("featuriser.")})
    save_file(old, str(run / "model.safetensors"))
    (run / "pixels.json").unlink()
    config = json.loads((run / "config.json").read_text())
    del config["head"]["file"]
    digest = hashlib.sha256((run / "model.safetensors").read_bytes()).hexdigest()
    config["files"] = {"model.safetensors": digest}
    (run / "config.json").write_text(json.dumps(config))
    loaded = ImageClassifier.load(run)
    np.testing.assert_array_equal(
        loaded.predict_proba([str(p) for p in paths]), clf.predict_proba([str(p) for p in paths])
    )
