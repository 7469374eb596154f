"""TextClassifier end to end on tiny data: frozen and trainable strategies on the bundled MiniLM,
the TF-IDF control, auto, truncation, the run directory (safetensors + JSON, never a pickle),
and awkward input.

The sentences are written here: 20 plainly positive and 20 plainly negative film reviews, 16 of
each to train and 4 of each held out. One embedding cache serves the whole module (it is
content-addressed, so sharing it only saves time). SST-2 few-shot figures run when
../shared/data/sst2 is there and skip otherwise.
"""

from __future__ import annotations

import json
import pickle
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from badfiles import write_bad_texts
from safetensors.torch import load_file

from headstart.errors import HeadstartError
from headstart.estimators import ImageClassifier, TextClassifier
from headstart.estimators.text import count_truncated
from headstart.heads import Head
from headstart.strategies import get_strategy

POSITIVE = [
    "a wonderful film with a warm heart",
    "the acting is superb and the story moving",
    "I loved every minute of it",
    "a delightful and charming comedy",
    "beautifully shot and wonderfully acted",
    "one of the best films of the year",
    "funny, touching and full of life",
    "a joy to watch from start to finish",
    "brilliant performances all around",
    "an uplifting story told with great care",
    "the music is lovely and the cast is excellent",
    "a smart, witty and heartfelt movie",
    "I laughed and cried, a real gem",
    "gorgeous to look at and a pleasure to follow",
    "a triumph of storytelling",
    "fresh, clever and very entertaining",
    "the finest work this director has done",
    "an absolute delight for the whole family",
    "a moving and beautiful experience",
    "great fun with a terrific ending",
]
NEGATIVE = [
    "a dull and lifeless film",
    "the acting is wooden and the plot a mess",
    "I hated every minute of it",
    "a tedious and unfunny comedy",
    "badly shot and poorly acted",
    "one of the worst films of the year",
    "boring, clumsy and far too long",
    "a chore to sit through",
    "awful performances all around",
    "a depressing story told without any care",
    "the music is grating and the cast is terrible",
    "a stupid, lazy and cynical movie",
    "I wanted my money back, a real mess",
    "ugly to look at and painful to follow",
    "a disaster of storytelling",
    "stale, dumb and very annoying",
    "the weakest work this director has done",
    "an absolute waste of time for everyone",
    "a pointless and ugly experience",
    "no fun at all with a terrible ending",
]
CLASSES = ["neg", "pos"]
TRAIN = POSITIVE[:16] + NEGATIVE[:16]
TRAIN_Y = ["pos"] * 16 + ["neg"] * 16
HELD_OUT = POSITIVE[16:] + NEGATIVE[16:]
HELD_OUT_Y = ["pos"] * 4 + ["neg"] * 4
FAST = dict(epochs=1, batch_size=8, workers=0, device="cpu", verbose=False)
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin"}
SST2 = Path(__file__).resolve().parents[1].parent / "shared/data/sst2"


CACHE_PER_MODULE = True  # conftest: one embedding cache for this module


def write_table(path: Path, texts, labels, sep: str = ",") -> Path:
    """A CSV/TSV with text and label columns (texts quoted when they hold the separator)."""
    import csv

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=sep, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels, strict=True))
    return path


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> tuple[Path, Path]:
    """(train.csv with 32 rows, held_out.tsv with 8)."""
    folder = tmp_path_factory.mktemp("tables")
    train = write_table(folder / "train.csv", TRAIN, TRAIN_Y)
    return train, write_table(folder / "held_out.tsv", HELD_OUT, HELD_OUT_Y, sep="\t")


def make(strategy: str, **changes) -> TextClassifier:
    return TextClassifier(strategy=strategy, **{**FAST, **changes})


def no_pickles(run_dir: Path) -> None:
    found = [p for p in Path(run_dir).rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES]
    assert not found, f"pickle-format files in the run directory: {found}"


def _refuse(*args, **kwargs):
    raise AssertionError("loading a run must not unpickle anything")


def load_without_unpickling(run_dir: Path) -> TextClassifier:
    with pytest.MonkeyPatch.context() as patch:
        for module, name in ((torch, "load"), (pickle, "load"), (pickle, "loads")):
            patch.setattr(module, name, _refuse)
        return TextClassifier.load(run_dir)


# ---- strategies ----------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["linear-probe", "mlp-head", "tfidf"])
def test_fast_strategies_on_a_table(strategy, tables, tmp_path):
    train, held_out = tables
    run = tmp_path / "run"
    clf = make(strategy).fit(train, val=held_out, run_dir=str(run))
    assert clf.strategy_name_ == strategy and clf.task_.classes == CLASSES
    assert clf.fit_info_["n_train"] == 32 and clf.fit_info_["n_val"] == 8
    assert clf.metrics_["n"] == 8
    if strategy != "tfidf":  # tf-idf shares few words between these train and test sentences
        assert clf.metrics_["accuracy"] >= 0.75, clf.metrics_
    assert clf.evaluate(held_out)["accuracy"] == clf.metrics_["accuracy"]

    proba = clf.predict_proba(HELD_OUT)
    assert proba.shape == (8, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    labels = clf.predict(HELD_OUT)
    assert clf.predict(HELD_OUT[0]) == labels[:1]  # one string is one text
    assert clf.predict(str(held_out)) == labels  # a str naming a table is the table

    no_pickles(run)
    loaded = load_without_unpickling(run) if strategy == "tfidf" else TextClassifier.load(run)
    assert loaded.strategy_name_ == strategy
    if strategy == "tfidf":
        np.testing.assert_array_equal(loaded.predict_proba(HELD_OUT), proba)
    else:
        np.testing.assert_allclose(loaded.predict_proba(HELD_OUT), proba, atol=1e-6)
    assert loaded.predict(HELD_OUT) == labels
    config = json.loads((run / "config.json").read_text())
    assert config["estimator"] == "TextClassifier" and config["modality"] == "text"
    report = (run / "report.md").read_text()
    assert any(text in report for text in HELD_OUT)  # worst examples show their text
    if strategy == "tfidf":
        assert config["backbone"] is None and config["head"]["kind"] == "tfidf"
        assert set(config["files"]) == {"model.safetensors", "tfidf.json"}
        assert "none (no backbone)" in (run / "report.md").read_text()
    else:
        assert config["backbone"]["name"] == "minilm_l6"
        assert config["preprocess"]["type"] == "TextPreprocess"
        assert config["fit"]["truncated_rows"] == 0


def test_tfidf_saves_vocabulary_as_json_and_weights_as_safetensors(tmp_path):
    clf = make("tfidf").fit(TRAIN, y=TRAIN_Y)
    assert clf.backbone_ is None and not clf.backbone_trained_
    assert clf.fit_info_["tfidf"]["terms"] > 100 and "C" in clf.fit_info_["tfidf"]
    assert clf.predict(["a wonderful film", "a dull film"]) == ["pos", "neg"]
    run = clf.save(tmp_path / "run")
    saved = json.loads((run / "tfidf.json").read_text())
    assert saved["options"]["ngram_range"] == [1, 2] and saved["options"]["sublinear_tf"]
    assert len(saved["terms"]) == len(saved["idf"]) == clf.fit_info_["tfidf"]["terms"]
    assert "wonderful film" in saved["terms"]  # word bigrams
    weights = load_file(str(run / "model.safetensors"))
    assert set(weights) == {"head.weight", "head.bias"}
    assert weights["head.weight"].shape == (2, len(saved["terms"]))
    assert weights["head.weight"].dtype == torch.float64

    # the saved transform is scikit-learn's TfidfVectorizer, re-computed from JSON
    from sklearn.feature_extraction.text import TfidfVectorizer

    held = {i.text for i in clf.val_items_}  # the default split keeps 20% for validation
    fitted_on = [t for t in TRAIN if t not in held]
    reference = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True).fit(fitted_on)
    loaded = load_without_unpickling(run)
    texts = [*HELD_OUT, "words never seen, like zyzzyva"]
    ours = loaded.strategy_.featuriser.transform(texts)
    theirs = reference.transform(texts)[:, [reference.vocabulary_[t] for t in saved["terms"]]]
    assert abs(ours - theirs).max() < 1e-12

    tampered = json.loads((run / "tfidf.json").read_text())
    tampered["idf"][0] += 1.0
    (run / "tfidf.json").write_text(json.dumps(tampered))
    with pytest.raises(HeadstartError, match="altered or damaged"):
        TextClassifier.load(run)


@pytest.mark.parametrize("kind", ["multilabel", "regression"])
def test_tfidf_other_tasks(kind, tmp_path):
    if kind == "multilabel":
        labels = [y + ("|film" if "film" in t else "") for t, y in zip(TRAIN, TRAIN_Y, strict=True)]
    else:
        labels = [f"{(y == 'pos') + 0.01 * i:.2f}" for i, y in enumerate(TRAIN_Y)]
    clf = make("tfidf").fit(TRAIN, labels, run_dir=str(tmp_path / "run"))
    assert clf.task_.kind == kind
    outputs = clf.predict_proba(HELD_OUT)
    loaded = TextClassifier.load(tmp_path / "run")
    np.testing.assert_array_equal(loaded.predict_proba(HELD_OUT), outputs)
    assert loaded.predict(HELD_OUT) == clf.predict(HELD_OUT)


def test_tfidf_is_for_texts_only(tmp_path):
    with pytest.raises(HeadstartError, match="'tfidf' applies to text") as caught:
        ImageClassifier(strategy="tfidf", verbose=False).fit(tmp_path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("strategy", ["fine-tune", "freeze-unfreeze"])
def test_trainable_strategies_one_epoch(strategy, tmp_path, minilm, trained_weights_kept):
    texts, labels = TRAIN[:8] + TRAIN[16:24], TRAIN_Y[:8] + TRAIN_Y[16:24]
    run = tmp_path / "run"
    clf = make(strategy, lr_decay=0.8).fit(texts, labels, run_dir=str(run))
    first = [0] if strategy == "freeze-unfreeze" else []  # head-first: its start, scored
    assert clf.backbone_trained_ and [e["epoch"] for e in clf.history_] == [*first, 1]
    assert clf.metrics_["n"] == 4  # 2 of each class held out by the default split
    name = "model.encoder.layer.5.attention.self.query.weight"
    moved = (clf.backbone_.state_dict()[name] - minilm.state_dict()[name]).abs().max()
    assert 0 < moved < 0.05  # one small step from the pre-trained weights
    proba = clf.predict_proba(HELD_OUT)

    no_pickles(run)
    assert any(k.startswith("backbone.") for k in load_file(str(run / "model.safetensors")))
    loaded = load_without_unpickling(run)
    np.testing.assert_allclose(loaded.predict_proba(HELD_OUT), proba, atol=1e-5)
    config = json.loads((run / "config.json").read_text())
    assert config["strategy"]["lr_decay"] == 0.8
    assert config["backbone"]["weight_id"].startswith("tuned-")
    assert (run / "curves.png").is_file()


@pytest.mark.parametrize("strategy", ["fine-tune", "freeze-unfreeze"])
def test_layer_wise_lr_decay(strategy, minilm):
    chosen = get_strategy(strategy, lr=1e-3, lr_decay=0.5)
    groups = chosen.optimizer_groups(minilm, Head(minilm.feature_dim, 2))
    names = [g["name"] for g in groups]
    assert names == ["embeddings", *(f"layer.{i}" for i in range(6)), "final", "head"]
    rates = [g["lr"] for g in groups]
    assert rates == pytest.approx([1e-3 * 0.5**k for k in range(7, -1, -1)] + [1e-3])
    undecayed = get_strategy(strategy, lr=1e-3).optimizer_groups(minilm, Head(384, 2))
    if strategy == "fine-tune":  # the same rate everywhere unless lr_decay is given
        assert {g["lr"] for g in undecayed} == {1e-3}


# ---- auto ----------------------------------------------------------------------------------


def test_auto_on_separable_texts_keeps_the_probe_and_says_why(tables, tmp_path, capsys):
    run = tmp_path / "run"
    clf = make("auto", verbose=True, budget="1m").fit(tables[0], run_dir=str(run))
    assert clf.strategy_name_ == "linear-probe" and "already separate" in clf.strategy_reason_
    assert f"strategy auto -> linear-probe: {clf.strategy_reason_}" in capsys.readouterr().err
    assert clf.strategy_reason_ in (run / "report.md").read_text()


# ---- truncation ----------------------------------------------------------------------------


def test_long_texts_are_truncated_and_counted(tmp_path, minilm):
    limit = minilm.preprocess.max_length
    long_texts = {
        "pos": "wonderful " * 20_000,  # 200,000 characters
        "neg": "dreadful " * 400,  # about 400 tokens
    }
    texts = TRAIN + list(long_texts.values())
    labels = TRAIN_Y + list(long_texts)
    assert count_truncated(minilm.tokenizer, texts, limit) == 2
    assert count_truncated(minilm.tokenizer, ["word " * (limit - 3)], limit) == 0  # fits exactly
    assert count_truncated(minilm.tokenizer, ["word " * (limit - 1)], limit) == 1
    run = tmp_path / "run"
    clf = make("linear-probe").fit(texts, labels, val=(HELD_OUT, HELD_OUT_Y), run_dir=str(run))
    assert clf.fit_info_["truncated_rows"] == 2 and clf.fit_info_["max_length"] == limit
    assert f"| truncated texts (over {limit} tokens) | 2 |" in (run / "report.md").read_text()
    assert clf.predict([long_texts["pos"]]) == ["pos"]


# ---- awkward input -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_texts")
    return folder, write_bad_texts(folder)


def test_bad_rows_are_skipped_with_row_numbers(bad):
    folder, expect = bad
    clf = make("tfidf").fit(TRAIN, y=TRAIN_Y)
    for name, want in expect.items():
        if "error" in want:
            with pytest.raises(HeadstartError, match=re.escape(want["error"])):
                clf.embeddings(folder / name)
            continue
        found = clf.embeddings(folder / name)
        assert [i.id for i in found.items] == want["ids"], name
        assert [s.id for s in found.skipped] == list(want["skipped"]), name
        for skip in found.skipped:
            assert skip.reason.startswith(want["skipped"][skip.id]), (name, skip)
        if "longest" in want:
            assert max(len(i.text) for i in found.items) == want["longest"]
    # to predict, a row needs a text, not a label
    unlabelled = clf.embeddings(folder / "bad_line.jsonl", labels=False)
    assert [i.id for i in unlabelled.items] == ["1", "3"]
    with pytest.raises(HeadstartError, match=r"1 of 3 inputs cannot be used \(first: 2: not valid"):
        clf.predict(folder / "bad_line.jsonl")


def test_skipped_rows_are_reported_during_fit(bad, capsys):
    folder, expect = bad
    clf = make("tfidf", verbose=True).fit(folder / "blanks.csv", val=folder / "blanks.csv")
    assert {s.id: s.reason for s in clf.skipped_[:3]} == expect["blanks.csv"]["skipped"]
    assert clf.fit_info_["n_train"] == 2
    err = capsys.readouterr().err
    for row in ("2", "3", "4"):
        assert f"skipped (training data): {row}: empty text" in err


def test_bad_tables_are_one_line_errors(bad, tmp_path):
    folder, _ = bad
    one_class = write_table(tmp_path / "one.csv", TRAIN[:4], ["pos"] * 4)
    unlabelled = tmp_path / "unlabelled.csv"
    unlabelled.write_text("text\n" + "\n".join(TRAIN) + "\n")
    cases = {
        folder / "no_text_col.csv": r"no 'text' or 'sentence' column; found columns "
        r"\['review', 'stars'\].*--text-col",
        folder / "bad_line.jsonl": "Class '0' has 1 example",  # one good row is left
        one_class: r"at least two classes; the data has one \('pos'\)",
        unlabelled: "has no labels",
    }
    for data, message in cases.items():
        with pytest.raises(HeadstartError, match=message) as caught:
            make("tfidf").fit(data)
        assert "\n" not in str(caught.value)
    with pytest.raises(HeadstartError, match=r"no column 'body'; found columns \['text', 'lab"):
        make("tfidf").fit(one_class, text_col="body")


def test_empty_texts(tmp_path):
    with pytest.raises(HeadstartError, match=r"nothing usable.*\(first: 1: empty text\)"):
        make("tfidf").fit(["", "   ", "\t\n"], y=["a", "b", "a"])
    clf = make("tfidf").fit(TRAIN, y=TRAIN_Y)
    with pytest.raises(HeadstartError, match=r"1 of 3 inputs cannot be used \(first: 2: empty"):
        clf.predict(["a fine film", "  ", "a dull film"])
    with pytest.raises(HeadstartError, match="has no labels"):
        clf.fit(TRAIN)
    with pytest.raises(HeadstartError, match="Validation data has no labels"):
        clf.fit(TRAIN, y=TRAIN_Y, val=HELD_OUT)


def test_text_columns_by_name(tmp_path):
    path = tmp_path / "reviews.jsonl"
    rows = [{"body": t, "stars": y, "text": "decoy"} for t, y in zip(TRAIN, TRAIN_Y, strict=True)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    clf = make("tfidf").fit(path, val=path, text_col="body", label_col="stars")
    assert clf.metrics_["accuracy"] == 1.0  # the decoy column would give chance
    assert clf.text_col_ == "body" and clf.label_col_ == "stars"  # fitted state, not params
    assert "text_col" not in clf.get_params()
    assert clf.evaluate(path)["accuracy"] == 1.0  # the columns fit read, by default


# ---- a real benchmark, when the data is there --------------------------------------------------


@pytest.mark.skipif(not SST2.is_dir(), reason="../shared/data/sst2 is not there")
@pytest.mark.parametrize("strategy", ["linear-probe", "tfidf"])
def test_sst2_few_shot(strategy, tmp_path):
    """16 labels per class from SST-2 train (seed 0), scored on the first 200 dev sentences."""
    dev = (SST2 / "dev.tsv").read_text(encoding="utf-8").splitlines()
    (tmp_path / "dev.tsv").write_text("\n".join(dev[:201]) + "\n")
    clf = make(strategy, per_class=16).fit(SST2 / "train.tsv", val=tmp_path / "dev.tsv")
    assert clf.fit_info_["class_counts"] == {"0": 16, "1": 16}
    floor = {"linear-probe": 0.55, "tfidf": 0.45}[strategy]  # chance: 0.5
    assert clf.metrics_["n"] == 200 and clf.metrics_["accuracy"] > floor, clf.metrics_


def test_one_string_is_one_text_not_a_path(tmp_path):
    clf = make("tfidf").fit(TRAIN, y=TRAIN_Y)
    assert clf.predict("a wonderful film") == ["pos"]
    assert len(clf.predict("missing.csv or just words")) == 1
    with pytest.raises(HeadstartError, match="does not exist"):
        clf.predict("missing.csv")  # looks like a table: a clear error, not a prediction
    with pytest.raises(HeadstartError, match="'notes.txt' does not exist"):
        make("tfidf").fit("notes.txt")  # to fit, a str is always a path
    pictures = tmp_path / "pictures" / "cats"
    pictures.mkdir(parents=True)
    (pictures / "a.png").write_bytes(b"not decoded")
    with pytest.raises(HeadstartError, match="holds images. Use ImageClassifier"):
        clf.predict(str(tmp_path / "pictures"))
    rng = random.Random(0)
    shuffled = rng.sample(HELD_OUT, len(HELD_OUT))
    assert clf.predict(shuffled) == [clf.predict(t)[0] for t in shuffled]
    assert re.fullmatch(r"TextClassifier\(strategy='tfidf', .*\)", repr(clf))
