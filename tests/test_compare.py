"""`headstart compare`: the grid, resume, the same numbers as `headstart fit`, figures, report,
and one-line errors. Data is written by the tests: faces from scikit-image, short texts."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from headstart.compare import compare
from headstart.compare.grid import Settings, default_strategies, parse_sizes, parse_strategies
from headstart.errors import HeadstartError

GOOD = ["good", "great", "fine", "lovely", "superb", "nice", "warm", "bright", "happy", "fun"]
BAD = ["bad", "awful", "dull", "ugly", "poor", "nasty", "cold", "grim", "sad", "boring"]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_texts(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("text,label\n" + "".join(f"{t},{label}\n" for t, label in rows))
    return path


@pytest.fixture
def texts(tmp_path) -> tuple[Path, Path]:
    """train.csv (6 per class) and test.csv (4 per class): word pairs from shared vocabularies,
    so both TF-IDF and the encoder have something to learn."""
    rng = np.random.default_rng(0)

    def rows(words, label, count):
        return [(" ".join(rng.choice(words, 3, replace=False)), label) for _ in range(count)]

    train = write_texts(tmp_path / "train.csv", rows(GOOD, "pos", 6) + rows(BAD, "neg", 6))
    test = write_texts(tmp_path / "test.csv", rows(GOOD, "pos", 4) + rows(BAD, "neg", 4))
    return train, test


@pytest.fixture(scope="module")
def faces() -> dict[str, list[np.ndarray]]:
    from skimage import data

    images = (data.lfw_subset() * 255).round().astype(np.uint8)
    return {"face": list(images[:10]), "not-face": list(images[100:110])}


def write_faces(folder: Path, faces, start: int, count: int) -> Path:
    for label, images in faces.items():
        (folder / label).mkdir(parents=True, exist_ok=True)
        for index in range(start, start + count):
            Image.fromarray(images[index]).save(folder / label / f"{index:02d}.png")
    return folder


def test_parse_sizes_and_strategies():
    assert parse_sizes("10,1,all,5,1") == [1, 5, 10, None]
    assert parse_sizes(" 3 ") == [3]
    for bad, message in (("1,x", "'x' is not a whole number"), ("0", "at least 1"), ("", "empty")):
        with pytest.raises(HeadstartError, match=message):
            parse_sizes(bad)
    assert parse_strategies("tfidf, linear-probe,tfidf", "text") == ["tfidf", "linear-probe"]
    with pytest.raises(HeadstartError, match="'linear-probe'.*Did you mean 'linear-probe'"):
        parse_strategies("linear-probe,linear-prob", "image")
    with pytest.raises(HeadstartError, match="applies to text"):
        parse_strategies("tfidf", "image")


def test_default_strategies_follow_the_registry(monkeypatch):
    from headstart.strategies import STRATEGIES

    assert default_strategies("text") == [
        "linear-probe",
        "freeze-unfreeze",
        "from-scratch",
        "tfidf",
    ]
    monkeypatch.delitem(STRATEGIES, "pixels", raising=False)
    assert default_strategies("image") == ["linear-probe", "freeze-unfreeze", "from-scratch"]
    pixels = type("Pixels", (), {"modalities": ("image",), "classic": True})
    monkeypatch.setitem(STRATEGIES, "pixels", pixels)
    assert default_strategies("image")[-1] == "pixels"


def test_settings_fingerprint_ties_cells_to_what_they_depend_on():
    base = Settings("image", "efficientnet_lite0", 3, 0.2, "data1", "val1")
    epochs = Settings("image", "efficientnet_lite0", 4, 0.2, "data1", "val1")
    model = Settings("image", "other", 3, 0.2, "data1", "val1")
    data = Settings("image", "efficientnet_lite0", 3, 0.2, "data2", "val1")
    for name in ("linear-probe", "from-scratch", "freeze-unfreeze", "tfidf"):
        assert base.fingerprint(name) != data.fingerprint(name)
    assert base.fingerprint("linear-probe") == epochs.fingerprint("linear-probe")
    assert base.fingerprint("from-scratch") != epochs.fingerprint("from-scratch")
    assert base.fingerprint("freeze-unfreeze") != epochs.fingerprint("freeze-unfreeze")
    assert base.fingerprint("linear-probe") != model.fingerprint("linear-probe")
    assert base.fingerprint("tfidf") == model.fingerprint("tfidf")


def test_linear_probe_with_one_example_per_class_says_it_skipped_cv():
    import torch

    from headstart.heads import Task
    from headstart.strategies.frozen import LinearProbe

    features = np.array([[1.0, 0.0, 0.2], [0.0, 1.0, 0.1]], dtype=np.float32)
    task = Task.from_labels(["a", "b"])
    head, info = LinearProbe().fit_head(features, np.array([0, 1]), task, seed=0)
    assert info["C"] == 1.0 and "single example" in info["C_chosen_by"]
    with torch.no_grad():
        assert head(torch.from_numpy(features)).argmax(-1).tolist() == [0, 1]
    two = np.concatenate([features, features + 0.05])
    _, info = LinearProbe().fit_head(two, np.array([0, 1, 0, 1]), task, seed=0)
    assert "C_chosen_by" not in info and "cv_accuracy" in info


def test_images_end_to_end_match_a_separate_fit(tmp_path, faces, run_main):
    """A compare and a `headstart fit` of one of its cells, on the command line: the fit's metrics
    are the compare's row, to the digit. That from-scratch cell runs after three others in the
    compare process, so its random init must come from the seed alone."""
    train = write_faces(tmp_path / "train", faces, 0, 4)
    val = write_faces(tmp_path / "val", faces, 6, 3)
    out = tmp_path / "cmp"
    compared = run_main(
        "compare", train, "--val", val, "--out", out, "--strategies", "linear-probe,from-scratch",
        "--per-class", "1,2", "--seeds", 1, "--epochs", 1,
    )  # fmt: skip
    fitted = run_main(
        "fit", train, "--val", val, "--strategy", "from-scratch", "--per-class", 2, "--seed", 0,
        "--epochs", 1, "--out", tmp_path / "fs",
    )  # fmt: skip
    assert compared[0] == fitted[0] == 0, (compared, fitted)
    rows = read_csv(out / "results.csv")
    cells = [(s, k) for k in "12" for s in ("linear-probe", "from-scratch")]
    assert [(r["strategy"], r["per_class"], r["seed"]) for r in rows] == [(*c, "0") for c in cells]
    assert all(r["status"] == "ok" and r["n_test"] == "6" for r in rows)
    assert [r["n_train"] for r in rows] == ["2", "2", "4", "4"]
    params = {r["strategy"]: int(r["trainable_parameters"]) for r in rows}
    assert params["linear-probe"] == 1280 * 2 + 2 and params["from-scratch"] > 3_000_000
    metrics = json.loads((tmp_path / "fs" / "metrics.json").read_text())
    assert float(rows[3]["accuracy"]) == pytest.approx(metrics["accuracy"], abs=1e-6)
    assert float(rows[3]["macro_f1"]) == pytest.approx(metrics["macro_f1"], abs=1e-6)
    assert float(rows[3]["log_loss"]) == pytest.approx(metrics["log_loss"], abs=1e-6)

    for name in ("learning_curve.png", "cost.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.size[0] > 600
    report = (out / "report.md").read_text()
    lp, fs = float(rows[2]["accuracy"]), float(rows[3]["accuracy"])
    sentence = next(line for line in report.splitlines() if "With 2 labels per class" in line)
    assert sentence.startswith("- With 2 labels per class, linear-probe reached ")
    assert f"{lp:.2f}" in sentence and f"{fs:.2f} from scratch" in sentence
    assert "With one seed, the lead over from-scratch is untested." in sentence or lp <= fs
    assert "![learning curve](learning_curve.png)" in report
    assert sentence[2:] in compared[1]
    assert "[4/4] from-scratch, 2/class, seed 0: accuracy" in compared[2]


def test_resume_keeps_finished_cells_and_refuses_stale_ones(tmp_path, texts):
    train, test = texts
    out = tmp_path / "cmp"
    args = dict(val=test, strategies="linear-probe,tfidf", seeds=2)
    finished = []

    def interrupt_after_three(done, total, cell, row):
        if row is not None:
            finished.append(cell)
            if len(finished) == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        compare(train, out, per_class="1", progress=interrupt_after_three, **args)
    assert len(read_csv(out / "results.csv")) == 3  # each cell is on disk when it finishes

    ran = []
    first = compare(
        train, out, per_class="1", progress=lambda *a: a[3] and ran.append(a[2]), **args
    )
    assert (first.reused, first.ran) == (3, 1) and ran == [
        c for c in first_grid(args) if c not in finished
    ]
    again = compare(train, out, per_class="1,2", **args)
    assert (again.reused, again.ran, again.moved) == (4, 4, 0)
    rows = read_csv(out / "results.csv")
    assert len(rows) == 8 and len({(r["strategy"], r["per_class"], r["seed"]) for r in rows}) == 8
    for r in rows:  # the same numbers as the Python fit with those settings
        if r["per_class"] == "2" and r["seed"] == "1":
            from headstart.estimators import TextClassifier

            est = TextClassifier(strategy=r["strategy"], per_class=2, seed=1, verbose=False)
            est.fit(train, val=test)
            assert float(r["accuracy"]) == pytest.approx(est.metrics_["accuracy"], abs=1e-6)
            assert float(r["macro_f1"]) == pytest.approx(est.metrics_["macro_f1"], abs=1e-6)
            assert float(r["log_loss"]) == pytest.approx(est.metrics_["log_loss"], abs=1e-6)

    with open(train, "a") as handle:
        handle.write("fine happy sad,pos\n")  # changed data: nothing may be reused
    changed = compare(train, out, per_class="1", **args)
    assert (changed.reused, changed.ran, changed.moved) == (0, 4, 8)
    assert len(read_csv(out / "results.csv")) == 4
    assert len(read_csv(out / "results.previous.csv")) == 8
    subset = compare(train, out, per_class="1", **{**args, "strategies": "tfidf"})
    assert (subset.reused, subset.ran, subset.moved) == (2, 0, 0)
    assert len(read_csv(out / "results.csv")) == 4  # linear-probe's cells are still valid: kept


def first_grid(args) -> list:
    from headstart.compare.grid import Cell

    return [Cell(s, 1, n) for n in (0, 1) for s in args["strategies"].split(",")]


@pytest.fixture
def run_main(monkeypatch, capsys):
    """`headstart ARGS` in this process (no seconds of imports per call): (exit code, stdout,
    stderr), with user errors turned into exit codes exactly as the console script does."""
    from headstart.cli.app import main

    def run(*args) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["headstart", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_user_errors_are_one_line(tmp_path, texts, faces, run_main):
    train, test = texts
    a_file = tmp_path / "taken.txt"
    a_file.write_text("x")
    cases = {
        "unknown strategy": (["--strategies", "linear-probe,fine-tun"], "Did you mean 'fine-tune'"),
        "per-class": (["--per-class", "1,five"], "'five' is not a whole number or 'all'"),
        "out is a file": (["--out", a_file], "is a file"),
        "budget": (["--budget", "soon"], "Cannot read the budget 'soon'"),
        "wrong modality": (["--val", write_faces(tmp_path / "faces", faces, 0, 1)], "holds"),
    }
    for name, (extra, message) in cases.items():
        out = [] if "--out" in extra else ["--out", tmp_path / name]
        code, _, err = run_main("compare", train, *out, *extra)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (name, err)
        assert message in lines[0], (name, lines[0])
        assert not (tmp_path / name).exists(), name
    code, _, err = run_main("compare", train, "--out", tmp_path / "u", "--strategies", "nope")
    assert "'linear-probe'" in err and "'tfidf'" in err and "'from-scratch'" in err


def cells(strategy: str, size, accuracies: list[float], seconds: float) -> list[dict]:
    return [
        {
            "strategy": strategy,
            "per_class": size,
            "seed": seed,
            "status": "ok",
            "accuracy": accuracy,
            "macro_f1": accuracy,
            "train_seconds": seconds,
            "predict_seconds": 0.1,
            "n_train": 2 * (size if size != "all" else 50),
            "trainable_parameters": 10,
        }
        for seed, accuracy in enumerate(accuracies)
    ]


def findings_for(rows: list[dict], strategies: list[str], sizes: list) -> list[str]:
    from headstart.compare.findings import sentences, summarise

    return sentences(summarise(rows, strategies, sizes), strategies, sizes, n_classes=2)


def test_findings_say_when_transfer_wins_and_when_it_does_not():
    names = ["linear-probe", "from-scratch", "tfidf"]
    rows = cells("linear-probe", 5, [0.90, 0.92], 1.0) + cells("from-scratch", 5, [0.5, 0.6], 40)
    rows += cells("tfidf", 5, [0.91, 0.95], 0.5)
    rows += cells("linear-probe", "all", [0.93, 0.95], 2.0)
    rows += cells("from-scratch", "all", [0.96, 0.97], 100) + cells("tfidf", "all", [0.9, 0.94], 1)
    said = findings_for(rows, names, [5, None])
    assert said[0].startswith(
        "With 5 labels per class, linear-probe reached 0.91 against 0.55 from scratch and 0.93 "
        "from tfidf (no transfer), in 1/40 of the time."
    )
    assert "Its lead over" not in said[0]
    assert (
        "Here transfer did not beat tfidf: the best pre-trained strategy, linear-probe, "
        "scored 0.91, against 0.93." in said[0]
    )
    assert said[1].startswith("With all labels (~50 per class), linear-probe reached 0.94")
    assert "Here transfer did not beat from-scratch" in said[1]
    assert (
        "Its lead over tfidf is within the spread over seeds (0.93-0.95 against 0.90-0.94)"
        in (said[1])
    )
    assert said[2] == (
        "No pre-trained strategy matched from-scratch with all labels (~50 per class) (0.96) "
        "at any size measured."
    )
    assert said[3].startswith("Training time summed over every size and seed: linear-probe 6.0 s")


def test_findings_count_the_labels_transfer_saves():
    names = ["freeze-unfreeze", "from-scratch"]
    rows = cells("freeze-unfreeze", 1, [0.8], 30) + cells("from-scratch", 1, [0.5], 30)
    rows += cells("freeze-unfreeze", 10, [0.9], 60) + cells("from-scratch", 10, [0.7], 40)
    said = findings_for(rows, names, [1, 10])
    assert (
        "in about the same time. With one seed, the lead over from-scratch is untested." in said[0]
    )
    assert "but took 1.5 times as long" in said[1]
    assert said[2] == (
        "With only 1 label per class, freeze-unfreeze (0.80) already matched from-scratch with "
        "10 labels per class (0.70)."
    )
