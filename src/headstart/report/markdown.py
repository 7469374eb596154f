"""A self-contained Markdown report of one run, and the worst-predicted examples that go in it."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import numpy as np

if TYPE_CHECKING:
    from ..heads.tasks import Task

# A confusion matrix is also written as a table when it is small enough to read as text.
MAX_TABLE_CLASSES = 12


def write_report(
    path: str | os.PathLike,
    *,
    title: str,
    summary: dict,
    metrics: dict,
    task: Task,
    worst: Sequence[dict],
    images: Sequence[str | os.PathLike],
) -> Path:
    """Write the report to `path` atomically and return it. Image paths become links relative to
    the report's folder."""
    path = Path(path)
    lines = [f"# {_inline(title)}", ""]
    if summary:
        lines += [
            "## Summary",
            "",
            *_table(["field", "value"], [[k.replace("_", " "), v] for k, v in summary.items()]),
            "",
        ]
    lines += _metrics_section(task, metrics)
    lines += _worst_section(task, worst)
    if images:
        lines += ["## Figures", ""]
        for image in images:
            link = _relative_link(image, path.parent)
            lines += [f"![{_inline(Path(image).stem)}]({link})", ""]
    text = "\n".join(lines).rstrip() + "\n"
    from ..files import write_text_atomic

    return write_text_atomic(path, text)


def worst_examples(
    task: Task,
    ids: Sequence,
    targets: np.ndarray,
    outputs: np.ndarray,
    k: int = 10,
    thresholds: np.ndarray | None = None,
) -> list[dict]:
    """The k worst-predicted examples, worst first, as JSON-serialisable dicts.

    classification: lowest probability on the true class -> id, true, predicted, confidence (of
    the prediction), true_probability. multilabel: largest total absolute error between targets
    and probabilities -> id, true, predicted (labels at `thresholds`, 0.5 default), error.
    regression: largest absolute error -> id, true, predicted, error.
    """
    targets = np.asarray(targets)
    outputs = np.asarray(outputs, dtype=np.float64)
    ids = list(ids)
    if k <= 0 or len(ids) == 0:
        return []
    return task.worst_examples(ids, targets, outputs, k, thresholds)


def _metrics_section(task: Task, metrics: dict) -> list[str]:
    headline = [[name, metrics[key]] for key, name in task.headline_metrics if key in metrics]
    lines = ["## Metrics", ""]
    if headline:
        lines += [*_table(["metric", "value"], headline), ""]
    for heading, note, header, rows in task.detail_tables(metrics, MAX_TABLE_CLASSES):
        lines += [heading, "", *([note, ""] if note else []), *_table(header, rows), ""]
    return lines


def _worst_section(task: Task, worst: Sequence[dict]) -> list[str]:
    if not worst:
        return []
    what = task.worst_by
    columns: list[str] = []
    for row in worst:
        columns += [key for key in row if key not in columns]
    rows = [[row.get(key, "") for key in columns] for row in worst]
    header = [key.replace("_", " ") for key in columns]
    return [
        "## Worst-predicted validation examples",
        "",
        f"The {len(worst)} validation examples with the {what}.",
        "",
        *_table(header, rows),
        "",
    ]


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = [
        "| " + " | ".join(_cell(h) for h in header) + " |",
        "|" + "|".join("---:" if _numeric(rows, i) else "---" for i in range(len(header))) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return lines


def _numeric(rows: list[list], column: int) -> bool:
    """Right-align a column whose cells are all numbers (or missing)."""
    values = [row[column] for row in rows if column < len(row) and row[column] is not None]
    kinds = (int, float, np.integer, np.floating)
    return bool(values) and all(isinstance(v, kinds) and not isinstance(v, bool) for v in values)


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return _format_float(float(value))
    if isinstance(value, (list, tuple)):
        return _inline(", ".join(str(v) for v in value))
    return _inline(str(value))


def _format_float(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
        return f"{value:.3g}"
    if abs(value) >= 100:
        return f"{value:,.1f}"
    return f"{value:.4f}"


def _inline(text: str) -> str:
    """Text safe inside a table cell or heading: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _relative_link(image: str | os.PathLike, folder: Path) -> str:
    image_path = Path(image)
    if image_path.is_absolute():
        with contextlib.suppress(ValueError):  # ValueError: another drive on Windows
            image_path = Path(os.path.relpath(image_path.resolve(), folder.resolve()))
    return quote(image_path.as_posix(), safe="/:")
