"""`headstart rank`: the JSON list through the installed console script, the table and the
one-line errors in-process (each subprocess pays seconds of imports)."""

from __future__ import annotations

import json
import sys

import pytest
from test_embed_cli import cli, ok

from headstart.cli import main

LITE0 = "efficientnet_lite0"


def run_main(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """`headstart ARGS` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["headstart", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_rank_json_best_first(image_folder):
    run = ok(cli("rank", image_folder, "--json", "--models", LITE0))
    rows = json.loads(run.stdout)
    assert [r["rank"] for r in rows] == [1, 2]
    assert {r["candidate"] for r in rows} == {LITE0, "no-transfer"}
    assert all({"candidate", "logme", "cv_accuracy", "seconds"} <= set(r) for r in rows)
    logmes = [r["logme"] for r in rows]
    assert logmes == sorted(logmes, reverse=True)
    lite0 = next(r for r in rows if r["candidate"] == LITE0)
    assert lite0["kind"] == "pre-trained" and lite0["leep"] is not None and lite0["dim"] == 1280


def test_rank_layers_table(image_folder, monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, "rank", image_folder, "--layers")
    assert code == 0, err
    for column in ("rank", "candidate", "logme", "leep", "h-score", "nce", "cv accuracy"):
        assert column in out
    assert f"{LITE0}@0:conv_stem" in out and "no-transfer" in out
    assert "unfreeze" in out.splitlines()[-1]


@pytest.mark.parametrize(
    "layout, extra, needle",
    [
        ({}, (), "has nothing usable"),
        ({"only": 3}, (), "at least two classes"),
        ({"a": 2, "b": 2}, ("--layers", "--models", LITE0), "--layers cuts one backbone"),
        ({"a": 2, "b": 2}, ("--models", "minilm_l6"), "takes text input"),
        ({"a": 2, "b": 2}, ("--models", "no_such_model"), "Unknown model"),
    ],
    ids=["empty-folder", "one-class", "layers-with-models", "wrong-modality", "unknown"],
)
def test_rank_errors_are_one_line(tmp_path, monkeypatch, capsys, layout, extra, needle):
    from conftest import write_noise_images

    data = tmp_path / "data"
    data.mkdir()
    for label, count in layout.items():
        write_noise_images(data / label, count, side=8)
    code, out, err = run_main(monkeypatch, capsys, "rank", data, *extra)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], err
