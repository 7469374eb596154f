"""The contract over every modality x task x strategy, generated from the registries.

Every combination `headstart.strategies.refusal` allows fits end to end on a tiny data set of
that modality and task, predicts, evaluates, saves and loads, and the loaded model predicts the
same. Every combination it refuses fails at once with that one-line HeadstartError, before any
backbone is built or anything embedded. A new modality, task or strategy is picked up without
editing this file; a new modality or task needs its tiny data below (DATA, LABELS), and the
test says so rather than skipping it.

Models are tiny: the bundled EfficientNet-Lite0 at a 32 px input for images, a 2-layer, 32-wide
random BERT saved as a Hugging Face folder for texts. One embedding cache serves the module (it
is content-addressed, so sharing it only saves time).
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_bert
from PIL import Image

import headstart.estimators
import headstart.zoo
import headstart.zoo.registry
from headstart.errors import HeadstartError
from headstart.modalities import MODALITIES, get_modality
from headstart.strategies import STRATEGIES, applicable, refusal
from headstart.tasks import pooled_tasks

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster

TASKS = pooled_tasks()  # detection has its own estimator and tests (test_detection.py)
COMBINATIONS = list(itertools.product(MODALITIES, TASKS, STRATEGIES))
ALLOWED = [c for c in COMBINATIONS if refusal(c[2], c[0], c[1]) is None]
REFUSED = [c for c in COMBINATIONS if refusal(c[2], c[0], c[1]) is not None]
# refusals the strategies must keep making (a strategy that starts to fit these is a bug)
KNOWN_REFUSALS = {
    *((m, t, s) for m in ("image",) for t in TASKS for s in ("lora", "contrastive", "tfidf")),
    *(("text", t, "pixels") for t in TASKS),
    ("text", "multilabel", "contrastive"),
    ("text", "regression", "contrastive"),
}
FAST = dict(epochs=1, batch_size=4, workers=0, device="cpu", verbose=False, val_fraction=0.25)
STRATEGY_OPTIONS = {"contrastive": "contrastive:iterations=2", "lora": "lora:r=2,alpha=4"}
KINDS, PER_KIND = 3, 4  # three classes (label sets, value bands), four items of each

WORDS = {
    "pets": ["the", "cat", "dog", "sat", "on", "mat", "rug", "ran"],
    "money": ["stock", "bond", "price", "rose", "fell", "market", "today"],
}
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS["pets"], *WORDS["money"]]


# ---- tiny data of every modality and task -----------------------------------------------------

# per task: the raw label of the k-th kind of item (0, 1, 2) and its n-th example
LABELS = {
    "classification": lambda kind, n: ("zero", "one", "two")[kind],
    "multilabel": lambda kind, n: ("a", "b", "a|b")[kind],
    "regression": lambda kind, n: f"{kind + 0.25 * n + 0.1:.2f}",
}


def write_images(folder: Path, labels: list[tuple[int, str]]) -> Path:
    """PNGs of scikit-learn's digits (digit `kind`), 16 px, and labels.csv naming them."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows, seen = ["path,label"], {}
    for index, (kind, label) in enumerate(labels):
        which = np.flatnonzero(digits.target == kind)[seen.setdefault(kind, 0)]
        seen[kind] += 1
        pixels = (digits.images[which] * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels).resize((16, 16)).save(folder / f"{index:02d}.png")
        rows.append(f"{index:02d}.png,{label}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder / "labels.csv"


def write_texts(folder: Path, labels: list[tuple[int, str]]) -> Path:
    """Short sentences (pet words, money words, or both for kind 2) and their labels."""
    rng = np.random.default_rng(0)
    rows = ["text,label"]
    for kind, label in labels:
        pool = [WORDS["pets"], WORDS["money"], WORDS["pets"] + WORDS["money"]][kind]
        rows.append(f"{' '.join(rng.choice(pool, size=5))},{label}")
    (folder / "texts.csv").write_text("\n".join(rows) + "\n")
    return folder / "texts.csv"


def write_audio(folder: Path, labels: list[tuple[int, str]]) -> Path:
    """Tones (a low one, a high one, or both for kind 2) as WAVs, and labels.csv naming them."""
    from audio_files import tone, write_wav

    rows = ["path,label"]
    for index, (kind, label) in enumerate(labels):
        parts = [[300.0], [1500.0], [300.0, 1500.0]][kind]
        clip = sum(tone(f * (1 + 0.02 * index), 0.3, seed=index) for f in parts)
        write_wav(folder / f"{index:02d}.wav", clip)
        rows.append(f"{index:02d}.wav,{label}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder / "labels.csv"


# modality -> writer(folder, labels)
DATA = {"image": write_images, "text": write_texts, "audio": write_audio}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """data(modality, task) -> the path of a tiny labelled table, written once per module."""
    made: dict[tuple[str, str], Path] = {}

    def get(modality: str, task: str) -> Path:
        assert modality in DATA, f"tests/test_contract.py: add tiny {modality} data to DATA"
        assert task in LABELS, f"tests/test_contract.py: add tiny {task} labels to LABELS"
        if (modality, task) not in made:
            labels = [(k, LABELS[task](k, n)) for n in range(PER_KIND) for k in range(KINDS)]
            folder = tmp_path_factory.mktemp(f"{modality}-{task}")
            made[modality, task] = DATA[modality](folder, labels)
        return made[modality, task]

    return get


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    """A 2-layer, 32-wide random BERT with its tokenizer, saved as a Hugging Face folder."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    return save_tiny_bert(folder, VOCAB, intermediate_size=37, max_positions=64)


@pytest.fixture(scope="module")
def small_images():
    """The bundled image backbone with a 32 px input: the same network, a cheap forward."""
    real = headstart.zoo.registry.get_entry
    name = get_modality("image").default_model

    def smaller(asked):
        entry = real(asked)
        if asked != name:
            return entry
        pre = dataclasses.replace(entry.cfg.preprocess, input_size=32)
        return dataclasses.replace(entry, cfg=dataclasses.replace(entry.cfg, preprocess=pre))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(headstart.zoo, "get_entry", smaller)
        patch.setattr(headstart.zoo.registry, "get_entry", smaller)
        yield


CACHE_PER_MODULE = True  # conftest: one embedding cache for this module


def estimator(modality: str):
    return getattr(headstart.estimators, get_modality(modality).estimator)


def model_for(modality: str, tiny_bert: str) -> str:
    return tiny_bert if modality == "text" else ""  # images: the bundled default, made small


def items_of(table: Path, modality: str) -> list:
    """The inputs of a table as predict takes them: image paths or texts."""
    import csv

    with table.open() as handle:
        rows = list(csv.DictReader(handle))
    if "path" in rows[0]:  # image or audio files
        return [str(table.parent / row["path"]) for row in rows]
    return [row["text"] for row in rows]


def combination_id(combination) -> str:
    return "-".join(combination)


# ---- every allowed combination fits, predicts, evaluates, saves and loads ----------------------

# (modality, strategy) pairs whose save/load round trip has run: the files a strategy writes do not
# change with the task, so one round trip per strategy and backbone kind is enough
SAVED_ONCE: set[tuple[str, str]] = set()


@pytest.mark.parametrize("combination", ALLOWED, ids=combination_id)
def test_allowed_combination_runs_end_to_end(combination, datasets, tiny_bert, small_images):
    modality, task, name = combination
    table = datasets(modality, task)
    cls = estimator(modality)
    strategy = STRATEGY_OPTIONS.get(name, name)
    est = cls(model_for(modality, tiny_bert), strategy, task=task, **FAST)
    est.fit(table)
    assert est.task_.name == task and est.strategy_.name == name
    inputs = items_of(table, modality)[:4]
    predicted = est.predict(inputs)
    proba = est.predict_proba(inputs)
    assert len(predicted) == len(inputs) == len(proba) and np.isfinite(proba).all()
    metrics = est.evaluate(table)
    assert metrics["n"] == KINDS * PER_KIND and metrics["skipped"] == 0
    if (modality, name) in SAVED_ONCE:
        return
    SAVED_ONCE.add((modality, name))
    run = est.save(table.parent / f"run-{name}")
    loaded = cls.load(run)
    np.testing.assert_allclose(loaded.predict_proba(inputs), proba, atol=1e-5)
    assert loaded.predict(inputs) == predicted


# ---- every refused combination fails at once, with refusal's one line -------------------------


@pytest.fixture
def no_backbone(monkeypatch):
    """Fail the test if anything builds, loads or embeds with a backbone."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a backbone was asked for before the refusal")

    for module in (headstart.zoo, headstart.zoo.registry):
        monkeypatch.setattr(module, "load_backbone", forbidden)
        monkeypatch.setattr(module, "get_entry", forbidden)
    monkeypatch.setattr(headstart.estimators.base, "Extractor", forbidden)


@pytest.mark.parametrize("combination", REFUSED, ids=combination_id)
@pytest.mark.parametrize("given", ["task named", "task detected"])
def test_refused_combination_fails_before_any_work(combination, given, datasets, no_backbone):
    modality, task, name = combination
    table = datasets(modality, task)
    expected = refusal(name, modality, task)
    est = estimator(modality)("some-model", name, task=task if given == "task named" else "auto")
    with pytest.raises(HeadstartError) as caught:
        est.fit(table)
    message = str(caught.value)
    assert message == expected and "\n" not in message
    assert not hasattr(est, "backbone_")


def test_refusals_are_listed_and_name_what_works(tmp_path):
    """The refused combinations and their messages, written to refused.txt (printed with -s):
    the known ones are there, and each names a strategy that does apply."""
    refused = {c: refusal(c[2], c[0], c[1]) for c in REFUSED}
    assert set(refused) >= KNOWN_REFUSALS, sorted(KNOWN_REFUSALS - set(refused))
    lines = []
    for (modality, task, name), message in refused.items():
        works = applicable(modality, task)
        assert name not in works and works, (modality, task, name)
        assert any(other in message for other in works), message
        lines.append(f"{modality} x {task} x {name}: {message}")
    listing = tmp_path / "refused.txt"
    listing.write_text("\n".join(lines) + "\n")
    print(f"\n{len(refused)} refused of {len(COMBINATIONS)} ({listing}):", *lines, sep="\n")


@pytest.mark.parametrize("name", STRATEGIES)
def test_strategies_name_registered_modalities_and_tasks(name):
    cls = STRATEGIES[name]
    assert cls.modalities and set(cls.modalities) <= set(MODALITIES), cls.modalities
    assert cls.tasks is None or (cls.tasks and set(cls.tasks) <= set(TASKS)), cls.tasks


def test_a_strategy_checks_modality_and_task_alone():
    # 'auto' is never refused: it picks an applicable strategy itself
    assert refusal("auto", "image", "regression") is None
    # an unknown task ('auto', not yet detected) checks the modality only
    assert refusal("contrastive", "text", "auto") is None
    assert "applies to text" in refusal("contrastive", "image", "auto")
    with pytest.raises(HeadstartError, match="must be one of"):
        refusal("no-such-strategy", "text", "classification")


# ---- the command line says the same one line ---------------------------------------------------


def test_cli_refuses_in_one_line(datasets, tmp_path):
    from test_embed_cli import cli, one_error_line

    table = datasets("text", "regression")
    run = cli("fit", table, "--strategy", "contrastive", "--task", "regression", "--out", tmp_path)
    line = one_error_line(run)  # exit 2, one error: line, no traceback
    assert line == f"error: {refusal('contrastive', 'text', 'regression')}"
    assert not any(tmp_path.iterdir())  # nothing written
