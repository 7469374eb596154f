"""`headstart fit`, `evaluate`, `predict` and `demo` through the installed console script.

Every subprocess pays a few seconds of imports, so there are few of them: one fit, evaluate and
predict chain on a class folder, one fit on a CSV table, and the user errors started together.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_embed_cli import cli, finish, ok, one_error_line, start

RUN_FILES = (
    "model.safetensors",
    "config.json",
    "metrics.json",
    "confusion_matrix.png",
    "report.md",
)


@pytest.fixture(scope="session")
def lfw_pictures() -> dict[str, list[np.ndarray]]:
    """The first 12 faces and 12 non-faces of scikit-image's lfw_subset (25 x 25 grey)."""
    from skimage import data

    images = (data.lfw_subset() * 255).round().astype(np.uint8)
    return {"face": list(images[:12]), "not-face": list(images[100:112])}


def write_classes(folder: Path, pictures: dict[str, list[np.ndarray]], count: int) -> Path:
    """folder/<class>/<n>.png, the first `count` pictures of each class."""
    for label, images in pictures.items():
        (folder / label).mkdir(parents=True, exist_ok=True)
        for index, image in enumerate(images[:count]):
            Image.fromarray(image).save(folder / label / f"{index:02d}.png")
    return folder


def test_fit_evaluate_predict(tmp_path, lfw_pictures):
    data = write_classes(tmp_path / "data", lfw_pictures, 6)
    run = tmp_path / "run"
    fitted = ok(
        cli(
            "fit", data, "--strategy", "linear-probe", "--out", run,
            "--per-class", 3, "--val-fraction", 0.3,
        )
    )  # fmt: skip
    assert re.fullmatch(r"validation: accuracy [\d.]+, macro_f1 [\d.]+, n 4\n", fitted.stdout)
    assert "strategy: linear-probe" in fitted.stderr
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["params"]["per_class"] == 3 and config["params"]["val_fraction"] == 0.3
    assert config["fit"]["class_counts"] == {"face": 3, "not-face": 3}  # 4 left after the split
    assert config["fit"]["n_val"] == 4

    evaluated = ok(cli("evaluate", run, data, "--json"))
    metrics = json.loads(evaluated.stdout)
    assert {"accuracy", "macro_f1", "n"} <= set(metrics) and metrics["n"] == 12
    assert metrics["accuracy"] > 0.5
    assert (run / "eval-data" / "confusion_matrix.png").is_file()
    assert json.loads((run / "eval-data" / "metrics.json").read_text())["n"] == 12

    good = data / "face" / "00.png"
    predicted = ok(cli("predict", run, good, tmp_path / "missing.jpg", "--json"))
    rows = json.loads(predicted.stdout)
    assert [row["input"] for row in rows] == [str(good), str(tmp_path / "missing.jpg")]
    assert rows[0]["label"] in ("face", "not-face") and 0.5 <= rows[0]["probability"] <= 1.0
    assert "error" not in rows[0]
    assert rows[1] == {"input": str(tmp_path / "missing.jpg"), "error": "file not found"}


def test_fit_from_csv_with_relative_paths(tmp_path, lfw_pictures):
    root = tmp_path / "table"
    write_classes(root / "images", lfw_pictures, 4)
    rows = [f"images/{p.parent.name}/{p.name},{p.parent.name}" for p in root.rglob("*.png")]
    (root / "labels.csv").write_text("path,label\n" + "\n".join(sorted(rows)) + "\n")
    run = tmp_path / "run"
    ok(cli("fit", root / "labels.csv", "--strategy", "linear-probe", "--out", run))
    config = json.loads((run / "config.json").read_text())
    assert config["task"] == {"kind": "classification", "classes": ["face", "not-face"]}
    assert config["fit"]["n_train"] + config["fit"]["n_val"] == 8


def test_user_errors_are_one_line(tmp_path, lfw_pictures):
    one_class = write_classes(tmp_path / "one", {"face": lfw_pictures["face"]}, 4)
    data = write_classes(tmp_path / "data", lfw_pictures, 4)
    unseen = write_classes(tmp_path / "unseen", {"cat": lfw_pictures["face"][4:]}, 2)
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "model.safetensors").write_bytes(b"\0" * 16)
    (incomplete / "metrics.json").write_text("{}\n")
    picture = data / "face" / "00.png"
    runs = {  # started together: the imports overlap
        "single class": start("fit", one_class, "--out", tmp_path / "r1"),
        "unseen labels": start("fit", data, "--val", unseen, "--out", tmp_path / "r2"),
        "no run dir": start("predict", tmp_path / "nowhere", picture),
        "no config": start("predict", incomplete, picture),
    }
    errors = {name: one_error_line(finish(proc)) for name, proc in runs.items()}
    assert "at least two classes" in errors["single class"]
    assert "not seen in training" in errors["unseen labels"] and "'cat'" in errors["unseen labels"]
    assert "does not exist" in errors["no run dir"]
    assert "config.json is missing" in errors["no config"]
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


@pytest.mark.slow
def test_demo():
    started = time.perf_counter()
    run = ok(cli("demo", timeout=1200))
    seconds = time.perf_counter() - started
    print(run.stdout, run.stderr, f"demo wall time {seconds:.1f} s", sep="\n")
    assert "auto chose linear-probe" in run.stdout
    found = re.search(r"Transfer: ([\d.]+) vs ([\d.]+) from scratch", run.stdout)
    assert found, run.stdout
    transfer, scratch = map(float, found.groups())
    assert transfer > 0.8 and transfer > scratch
