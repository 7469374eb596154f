"""Shared console output: errors as one line, progress bars only on a terminal, skip reports."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..features.speed import DEVICES, PRECISION_CHOICES, choices_text
from ..files import write_text_atomic

if TYPE_CHECKING:  # a runtime import would pull in torch and timm: `cache info` would take seconds
    from ..data.sources import Skip

PRECISION_HELP = f"{choices_text(PRECISION_CHOICES)}."
DEVICE_HELP = f"{choices_text(DEVICES)}."
PREPROCESS_HELP = (
    "Change the backbone's preprocessing: KEY=VALUE[,KEY=VALUE], e.g. trim_silence=true "
    "(audio: cut pauses with silero-vad), min_seconds=2, max_length=128 (texts)."
)


def parse_settings(text: str | None) -> dict | None:
    """'a=1,b=true' -> {'a': '1', 'b': 'true'} (the preprocess types the values)."""
    from ..errors import HeadstartError

    if not text:
        return None
    settings = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise HeadstartError(
                f"--preprocess {text!r}: expected KEY=VALUE pairs separated by commas, "
                "e.g. trim_silence=true,min_seconds=2."
            )
        settings[key.strip()] = value.strip()
    return settings


err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

SHOWN_SKIPS = 20


@contextmanager
def progress_bar(description: str) -> Iterator:
    """Yields an update(done, total) callback; draws a bar only when stderr is a terminal."""
    if not err.is_terminal or os.environ.get("HEADSTART_NO_PROGRESS"):
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def report_skips(skipped: list[Skip], report_file: Path | None) -> None:
    """List skipped items (the first few on screen, all of them in a file next to the output)."""
    if not skipped:
        return
    for skip in skipped[:SHOWN_SKIPS]:
        err.print(f"skipped: {skip.id}: {skip.reason}", markup=False)
    more = len(skipped) - SHOWN_SKIPS
    if report_file is not None:
        write_text_atomic(report_file, "".join(f"{s.id}\t{s.reason}\n" for s in skipped))
        tail = f"; all {len(skipped)} listed in {report_file}"
    else:
        tail = ""
    if more > 0 or tail:
        err.print(
            f"{len(skipped)} skipped" + (f" ({more} not shown)" if more > 0 else "") + tail,
            markup=False,
        )


def fail(message: str, code: int = 2) -> None:
    err.print(f"error: {message}", markup=False)
    sys.exit(code)
