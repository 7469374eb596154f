"""An exception that is not a HeadstartError is a bug: one line, exit 1, traceback in a file."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from headstart.cli.app import main


def run_main(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["headstart", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def broken_cache_info(self):
    raise RuntimeError("the cache exploded")


@pytest.fixture
def broken(monkeypatch):
    from headstart.features.cache import EmbeddingCache

    monkeypatch.setattr(EmbeddingCache, "info", broken_cache_info)
    monkeypatch.delenv("HEADSTART_DEBUG", raising=False)


def crash_file(err: str) -> Path:
    found = re.search(r"traceback is in (\S+crash-\S+\.txt)", err)
    assert found, err
    return Path(found.group(1))


def test_a_bug_prints_one_line_and_writes_the_traceback(broken, monkeypatch, capsys):
    code, _, err = run_main(monkeypatch, capsys, "cache", "info")
    assert code == 1
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: RuntimeError: the cache exploded")
    assert "bug in headstart" in lines[0] and "--debug" in lines[0] and "report" in lines[0]
    path = crash_file(err)
    assert path.parent == Path(os.environ["HEADSTART_CACHE"])  # the cache folder, as configured
    text = path.read_text()
    assert "Traceback (most recent call last)" in text
    assert "broken_cache_info" in text and "RuntimeError: the cache exploded" in text
    assert "command: headstart cache info" in text


def test_a_bug_with_out_writes_next_to_the_output(monkeypatch, capsys, tmp_path):
    import headstart.api.embed

    def boom(*args, **kwargs):
        raise ValueError("unexpected state")

    monkeypatch.setattr(headstart.api.embed, "embed_source", boom)
    monkeypatch.delenv("HEADSTART_DEBUG", raising=False)
    (tmp_path / "data.csv").write_text("text,label\nhello,a\n")
    out = tmp_path / "run" / "x.npz"
    code, _, err = run_main(monkeypatch, capsys, "embed", tmp_path / "data.csv", "--out", out)
    assert code == 1
    path = crash_file(err)
    assert path.parent == out.parent
    assert "ValueError: unexpected state" in path.read_text()


@pytest.mark.parametrize("how", ["option", "env"])
def test_debug_shows_the_traceback(broken, monkeypatch, capsys, how):
    args = ["--debug", "cache", "info"] if how == "option" else ["cache", "info"]
    if how == "env":
        monkeypatch.setenv("HEADSTART_DEBUG", "1")
    code, _, err = run_main(monkeypatch, capsys, *args)
    assert code == 1
    assert "Traceback (most recent call last)" in err
    assert "broken_cache_info" in err
    assert "crash-" not in err  # shown, not filed


def test_user_errors_and_interrupts_keep_their_codes(monkeypatch, capsys):
    from headstart.features.cache import EmbeddingCache

    code, _, err = run_main(monkeypatch, capsys, "embed", "/no/such/folder", "--out", "x.npz")
    assert code == 2 and err.startswith("error:") and "bug" not in err

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(EmbeddingCache, "info", interrupted)
    code, _, err = run_main(monkeypatch, capsys, "cache", "info")
    assert (code, err.strip()) == (130, "error: interrupted")
