"""`headstart fit`, `evaluate` and `predict` on text tables, through the installed console script.

Every subprocess pays a few seconds of imports, so there are few of them: one fit, evaluate and
predict chain on a CSV, one TF-IDF fit on JSON Lines with named columns, and the user errors
started together.
"""

from __future__ import annotations

import json
import re

from test_embed_cli import cli, finish, ok, one_error_line, start
from test_text import HELD_OUT, HELD_OUT_Y, TRAIN, TRAIN_Y, write_table


def test_fit_evaluate_predict_on_a_csv(tmp_path):
    train = write_table(tmp_path / "train.csv", TRAIN, TRAIN_Y)
    held_out = write_table(tmp_path / "held_out.tsv", HELD_OUT, HELD_OUT_Y, sep="\t")
    run = tmp_path / "run"
    fitted = ok(cli("fit", train, "--val", held_out, "--strategy", "linear-probe", "--out", run))
    assert re.fullmatch(r"validation: accuracy [\d.]+, macro_f1 [\d.]+, n 8\n", fitted.stdout)
    assert "strategy: linear-probe" in fitted.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["estimator"] == "TextClassifier"
    assert config["task"] == {"kind": "classification", "classes": ["neg", "pos"]}
    assert config["fit"]["truncated_rows"] == 0 and config["fit"]["n_train"] == 32
    assert "truncated texts" in (run / "report.md").read_text()

    unlabelled = tmp_path / "new.csv"
    unlabelled.write_text("text\na wonderful film\n\nthe worst film ever made\n")
    runs = {  # started together: the imports overlap
        "evaluate": start("evaluate", run, held_out, "--json"),
        "predict": start(
            "predict", run, unlabelled, "--text", "a warm and funny film", "--text", "", "--json"
        ),
        "nothing": start("predict", run),
        "task": start("evaluate", run, held_out, "--task", "regression"),
    }
    done = {name: finish(proc) for name, proc in runs.items()}

    metrics = json.loads(ok(done["evaluate"]).stdout)
    assert metrics["n"] == 8 and metrics["accuracy"] >= 0.75
    assert (run / "eval-held_out.tsv" / "metrics.json").is_file()

    rows = json.loads(ok(done["predict"]).stdout)
    assert [(r["input"], r.get("row")) for r in rows] == [
        ("a warm and funny film", None),
        ("", None),
        (str(unlabelled), 1),
        (str(unlabelled), 2),
        (str(unlabelled), 3),
    ]
    assert rows[0]["label"] == "pos" and 0.5 <= rows[0]["probability"] <= 1.0
    assert rows[1]["error"] == "empty text" and rows[3]["error"] == "empty text"
    assert [rows[2]["label"], rows[4]["label"]] == ["pos", "neg"]

    lines = {name: one_error_line(done[name]) for name in ("nothing", "task")}
    assert "Nothing to predict" in lines["nothing"] and "--text" in lines["nothing"]
    assert "fitted for classification" in lines["task"]


def test_tfidf_on_json_lines_with_named_columns(tmp_path):
    data = tmp_path / "reviews.jsonl"
    pairs = zip(TRAIN + HELD_OUT, TRAIN_Y + HELD_OUT_Y, strict=True)
    rows = [{"review": text, "stars": label} for text, label in pairs]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n")
    run = tmp_path / "run"
    fitted = ok(
        cli(
            "fit", data, "--text-col", "review", "--label-col", "stars",
            "--strategy", "tfidf", "--task", "classification", "--out", run,
        )
    )  # fmt: skip
    assert "skipped (training data): 41: not valid JSON" in fitted.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["backbone"] is None and config["columns"]["text_col"] == "review"
    assert (run / "tfidf.json").is_file()
    predicting = start("predict", run, "--text", "a wonderful film")
    evaluating = start("evaluate", run, data, "--json")  # the run's columns by default
    assert re.fullmatch(r"a wonderful film\s+(pos|neg)\s+[\d.]+\n", ok(finish(predicting)).stdout)
    assert json.loads(ok(finish(evaluating)).stdout)["n"] == 40


def test_user_errors_are_one_line(tmp_path):
    no_text = tmp_path / "no_text.csv"
    no_text.write_text("review,label\nnice,a\nbad,b\n")
    one_class = write_table(tmp_path / "one.csv", TRAIN[:6], ["pos"] * 6)
    blank = tmp_path / "blank.tsv"
    blank.write_text("sentence\tlabel\n \ta\n\t\tb\n")
    pictures = tmp_path / "pictures"
    for label in ("a", "b"):
        (pictures / label).mkdir(parents=True)
        for index in range(2):
            (pictures / label / f"{index}.png").write_bytes(b"not decoded before the check")
    runs = {  # started together: the imports overlap
        "no text column": start("fit", no_text, "--out", tmp_path / "r1"),
        "one class": start("fit", one_class, "--strategy", "tfidf", "--out", tmp_path / "r2"),
        "blank texts": start("fit", blank, "--out", tmp_path / "r3"),
        "tfidf on images": start("fit", pictures, "--strategy", "tfidf", "--out", tmp_path / "r5"),
    }
    errors = {name: one_error_line(finish(proc)) for name, proc in runs.items()}
    assert "found columns ['review', 'label']" in errors["no text column"]
    assert "--text-col" in errors["no text column"]
    assert "at least two classes" in errors["one class"]
    assert "nothing usable: all 2 entries were skipped" in errors["blank texts"]
    assert "'tfidf' applies to text" in errors["tfidf on images"]
    assert not any((tmp_path / f"r{k}").exists() for k in range(1, 6))
    # column names given on the command line: tests/test_text.py checks the messages in-process
