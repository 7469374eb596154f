"""`headstart embed`, `models` and `cache` end to end, through the installed console script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from badfiles import write_bad_images
from conftest import SAMPLES, child_env, write_pictures
from PIL import Image

from headstart.features.cache import DB_NAME

N_PICTURES = sum(len(names) for names in SAMPLES.values())
HYMENOPTERA = Path(__file__).resolve().parents[1].parent / "shared/data/hymenoptera_data"


def headstart_script() -> str:
    script = Path(sys.executable).parent / "headstart"
    found = str(script) if script.exists() else shutil.which("headstart")
    if not found:
        pytest.fail("the `headstart` console script is not installed next to this Python")
    return found


def start(*args, cache: Path | None = None) -> subprocess.Popen:
    """Start `headstart ARGS`; the cache is this test's unless `cache` is given."""
    extra = {"HEADSTART_CACHE": str(cache)} if cache is not None else {}
    return subprocess.Popen(
        [headstart_script(), *map(str, args)],
        env=child_env(**extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def cli(*args, cache: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `headstart ARGS` to the end."""
    return finish(start(*args, cache=cache), timeout)


def ok(run: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout}\n{run.stderr}"
    assert "Traceback" not in run.stderr
    return run


def one_error_line(run: subprocess.CompletedProcess, code: int = 2) -> str:
    """The run failed as a user error: exit `code`, one `error:` line, no traceback."""
    assert run.returncode == code, f"exit {run.returncode}\n{run.stdout}\n{run.stderr}"
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr
    return errors[0]


def copy_cache(source: Path, target: Path) -> None:
    """Seed a cache folder with another one's database (closed, so without a WAL to carry)."""
    target.mkdir(parents=True, exist_ok=True)
    for path in source.glob(DB_NAME + "*"):
        shutil.copyfile(path, target / path.name)


ROWS_CSV = (
    b"text,label\nfirst good row,pos\n,neg\n   ,pos\n"
    + "caf\u00e9 in latin-1,neg\n".encode("latin-1")
    + b"too,many,fields\nlast good row,neg\n"
)
ROWS_SKIPPED = {
    "2": "empty text",
    "3": "empty text",
    "4": "not valid UTF-8",
    "5": "cannot parse row",
}


@pytest.fixture(scope="module")
def cold(tmp_path_factory, sample_pictures):
    """Cold runs into one cache of their own, shared by several tests: the class folder of
    pictures, and a text table with bad rows. Both run at once (the cache takes two writers)."""
    root = tmp_path_factory.mktemp("cli_cold")
    folder, cache = root / "pictures", root / "cache"
    paths = write_pictures(folder, sample_pictures)
    table = root / "rows.csv"
    table.write_bytes(ROWS_CSV)
    npz, rows_npz = root / "out" / "cold.npz", root / "out" / "rows.npz"
    procs = [
        start("embed", folder, "--out", npz, cache=cache),
        start("embed", table, "--out", rows_npz, cache=cache),
    ]
    run, rows_run = (ok(done) for done in [finish(proc) for proc in procs])
    return {
        "folder": folder,
        "paths": paths,
        "cache": cache,
        "npz": npz,
        "run": run,
        "rows_npz": rows_npz,
        "rows_run": rows_run,
    }


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """Commands that end early (listing, user errors), started at once: most of their time is
    Python imports, which run side by side on a small machine."""
    root = tmp_path_factory.mktemp("cli_quick")
    cache = root / "cache"
    only_bad = root / "only_bad"
    only_bad.mkdir()
    (only_bad / "a.jpg").write_text("not a picture\n")
    (only_bad / "b.png").write_bytes(b"")
    pictures = root / "pictures"
    pictures.mkdir()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(pictures / "green.png")
    reviews = root / "reviews.csv"
    reviews.write_text("review,stars\nnice,5\nbad,1\n")
    commands = {
        "models": ("models", "--json"),
        "only_bad": ("embed", only_bad, "--out", root / "only_bad.npz"),
        "modality": ("embed", pictures, "--model", "minilm_l6", "--out", root / "m.npz"),
        "no_text_col": ("embed", reviews, "--out", root / "r.npz"),
        "out_under_file": ("embed", reviews, "--out", reviews / "x.npz"),
    }
    procs = {name: start(*args, cache=cache) for name, args in commands.items()}
    runs = {name: finish(proc) for name, proc in procs.items()}
    return {"root": root, **runs}


# ---- models ---------------------------------------------------------------------------------


def test_models_json_lists_the_bundled_backbones(quick):
    rows = json.loads(ok(quick["models"]).stdout)
    by_name = {row["name"]: row for row in rows}
    expected = {
        "efficientnet_lite0": ("image", 1280),
        "efficientnet_lite1": ("image", 1280),
        "efficientnet_lite2": ("image", 1280),
        "minilm_l6": ("text", 384),
    }
    for name, (modality, dim) in expected.items():
        row = by_name[name]
        assert {"name", "modality", "feature_dim", "available_offline"} <= set(row)
        assert (row["modality"], row["feature_dim"]) == (modality, dim)
        assert row["available_offline"] is True


# ---- images ---------------------------------------------------------------------------------


def test_embed_writes_features_ids_and_labels(cold):
    assert "cache hits 0" in cold["run"].stderr
    assert f"computed {N_PICTURES}" in cold["run"].stderr
    assert f"({N_PICTURES} x 1280)" in cold["run"].stderr
    with np.load(cold["npz"]) as saved:
        assert set(saved.files) == {"features", "ids", "labels"}
        features, ids, labels = saved["features"], saved["ids"], saved["labels"]
    assert features.shape == (N_PICTURES, 1280)
    assert features.dtype == np.float32
    assert np.isfinite(features).all()
    assert list(ids) == [str(p) for p in cold["paths"]]
    assert list(labels) == [p.parent.name for p in cold["paths"]]
    assert not cold["npz"].with_name("cold.npz.skipped.txt").exists()


def test_warm_run_is_served_from_the_cache(cold, isolated_cache, tmp_path):
    copy_cache(cold["cache"], isolated_cache)
    npz = tmp_path / "warm.npz"
    run = ok(cli("embed", cold["folder"], "--out", npz))
    assert f"cache hits {N_PICTURES}, computed 0" in run.stderr
    with np.load(npz) as warm, np.load(cold["npz"]) as first:
        np.testing.assert_array_equal(warm["features"], first["features"])
        np.testing.assert_array_equal(warm["ids"], first["ids"])


# Runs the CLI, then says which heavy libraries the process imported (on stderr).
WATCHED = (
    "import sys\n"
    "from headstart.cli import main\n"
    "try:\n"
    "    main()\n"
    "finally:\n"
    "    heavy = [m for m in ('torch', 'timm', 'transformers') if m in sys.modules]\n"
    "    print('heavy imports:', ','.join(heavy) or 'none', file=sys.stderr)\n"
)


def watched(*args, cache: Path | None = None) -> subprocess.CompletedProcess:
    from headstart.features.speed import gpu_possible

    # On a GPU machine "auto" must ask torch about the GPU; the check here is the CPU path.
    device = ("--device", "cpu") if gpu_possible() and args[0] == "embed" else ()
    extra = {"HEADSTART_CACHE": str(cache)} if cache is not None else {}
    return subprocess.run(
        [sys.executable, "-c", WATCHED, *map(str, args), *device],
        env=child_env(**extra),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cached_embed_imports_no_torch(sample_pictures, tmp_path):
    folder = tmp_path / "pictures"
    write_pictures(folder, sample_pictures)
    first = ok(watched("embed", folder, "--out", tmp_path / "first.npz"))
    assert "heavy imports: none" not in first.stderr  # computing needs torch: the watch sees it
    assert "torch" in first.stderr.splitlines()[-1]
    second = ok(watched("embed", folder, "--out", tmp_path / "second.npz"))
    assert f"cache hits {N_PICTURES}, computed 0" in second.stderr
    assert second.stderr.splitlines()[-1] == "heavy imports: none"
    with np.load(tmp_path / "first.npz") as a, np.load(tmp_path / "second.npz") as b:
        np.testing.assert_array_equal(a["features"], b["features"])


def test_cached_text_embed_imports_no_torch(cold, tmp_path):
    cache = tmp_path / "cache"
    copy_cache(cold["cache"], cache)
    table = tmp_path / "rows.csv"
    table.write_bytes(ROWS_CSV)
    run = ok(watched("embed", table, "--out", tmp_path / "rows.npz", cache=cache))
    assert "computed 0" in run.stderr
    assert run.stderr.splitlines()[-1] == "heavy imports: none"


def test_listing_and_cache_info_import_no_torch(cold):
    for args in (("models",), ("models", "--json"), ("cache", "info")):
        run = ok(watched(*args, cache=cold["cache"]))
        assert run.stderr.splitlines()[-1] == "heavy imports: none", args


def test_models_table_never_cuts_a_name_in_a_pipe():
    from headstart.zoo import registered_names

    run = subprocess.run(
        [headstart_script(), "models"],
        env=child_env(COLUMNS="40"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    ok(run)
    assert "…" not in run.stdout
    listed = {line.split("│")[1].strip() for line in run.stdout.splitlines() if "│" in line}
    assert set(registered_names()) <= listed


def test_models_table_never_cuts_a_name_on_a_narrow_terminal():
    import io

    from rich.console import Console

    from headstart.cli.app import print_models
    from headstart.zoo import get_entry, registered_names

    rows = [get_entry(name).describe() for name in registered_names()]
    screen = io.StringIO()
    print_models(rows, Console(file=screen, width=40, force_terminal=True, color_system=None))
    names = [line.split("│")[1].strip() for line in screen.getvalue().splitlines() if "│" in line]
    assert names == registered_names()


def test_bad_images_are_reported_and_listed(tmp_path):
    folder = tmp_path / "bad"
    expect = write_bad_images(folder)
    npz = tmp_path / "new" / "folder" / "x.npz"  # created, with the report, when missing
    run = ok(cli("embed", folder, "--out", npz))

    bad = {name: e["reason"] for name, e in expect.items() if "reason" in e}
    good = sorted(name for name, e in expect.items() if "size" in e)
    shown = [line for line in run.stderr.splitlines() if line.startswith("skipped: ")]
    assert len(shown) == len(bad), run.stderr
    for name, reason in bad.items():
        assert any(name in line and reason in line for line in shown), (name, run.stderr)
    listed = dict(
        line.split("\t", 1) for line in npz.with_name("x.npz.skipped.txt").read_text().splitlines()
    )
    assert {Path(k).name: v for k, v in listed.items()} == bad
    with np.load(npz) as saved:
        assert sorted(Path(i).name for i in saved["ids"]) == good
        assert saved["features"].shape == (len(good), 1280)
        assert "labels" not in saved.files  # a flat folder has no labels


def test_folder_of_only_bad_files_is_an_error(quick):
    line = one_error_line(quick["only_bad"])
    assert "all 2 items skipped" in line
    assert not (quick["root"] / "only_bad.npz").exists()
    # each file still named with its reason
    assert "a.jpg: not an image" in quick["only_bad"].stderr
    assert "b.png: empty file (0 bytes)" in quick["only_bad"].stderr


def test_text_model_on_images_is_a_modality_error(quick):
    line = one_error_line(quick["modality"])
    assert "'minilm_l6' takes text input but the data is image" in line
    assert "--model efficientnet_lite0" in line  # names a backbone that fits
    assert not (quick["root"] / "m.npz").exists()


def test_out_under_a_file_fails_before_any_work(quick):
    line = one_error_line(quick["out_under_file"])
    assert "reviews.csv' is a file, not a folder" in line


# ---- text tables ----------------------------------------------------------------------------


def test_table_without_a_text_column_lists_the_columns(quick):
    line = one_error_line(quick["no_text_col"])
    assert "found columns ['review', 'stars']" in line
    assert "--text-col" in line


def test_bad_text_rows_are_skipped_with_row_numbers(cold):
    run, npz = cold["rows_run"], cold["rows_npz"]
    for row, reason in ROWS_SKIPPED.items():
        assert f"skipped: {row}: {reason}" in run.stderr, run.stderr
    report = npz.with_name("rows.npz.skipped.txt").read_text().splitlines()
    listed = dict(line.split("\t", 1) for line in report)
    assert set(listed) == set(ROWS_SKIPPED)
    assert "4 skipped" in run.stderr and "(2 x 384)" in run.stderr
    with np.load(npz) as saved:
        assert list(saved["ids"]) == ["1", "6"]
        assert list(saved["labels"]) == ["pos", "neg"]
        assert saved["features"].shape == (2, 384)


# ---- cache ----------------------------------------------------------------------------------


def test_cache_info_and_clear_one_model(cold, isolated_cache):
    copy_cache(cold["cache"], isolated_cache)  # the cold runs' 12 pictures and 2 texts

    info = ok(cli("cache", "info")).stdout
    assert str(isolated_cache) in info
    assert f"{N_PICTURES + 2} entries" in info
    assert f"efficientnet_lite0: {N_PICTURES} entries, dim 1280" in info
    assert "minilm_l6: 2 entries, dim 384" in info

    cleared = ok(cli("cache", "clear", "--model", "efficientnet_lite0")).stdout
    assert f"removed {N_PICTURES} entries of efficientnet_lite0" in cleared
    after = json.loads(ok(cli("cache", "info", "--json")).stdout)
    assert after["models"].get("efficientnet_lite0", {"entries": 0})["entries"] == 0
    assert after["models"]["minilm_l6"]["entries"] == 2
    assert after["entries"] == 2


# ---- real data ------------------------------------------------------------------------------


def test_hymenoptera_train_folder(tmp_path):
    train = HYMENOPTERA / "train"
    if not train.is_dir():
        pytest.skip(f"hymenoptera data not found at {HYMENOPTERA} (shared data not mounted)")
    gifs = [p for p in sorted(train.rglob("*")) if p.is_file() and _magic(p) == b"GIF8"]
    assert gifs, "expected a GIF among the training pictures"
    npz = tmp_path / "train.npz"
    run = ok(cli("embed", train, "--out", npz, timeout=600))

    assert "skipped" not in run.stderr.replace("skipped 0", ""), run.stderr
    with np.load(npz) as saved:
        ids, labels, features = list(saved["ids"]), list(saved["labels"]), saved["features"]
    assert features.shape == (245, 1280)
    assert np.isfinite(features).all()
    assert set(labels) == {"ants", "bees"}
    for gif in gifs:  # read (first frame), not skipped
        assert str(gif) in ids
    assert len(set(ids)) == 245
    assert os.path.commonpath(ids) == str(train)


def _magic(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(4)
