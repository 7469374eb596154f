"""report.md of a compare: findings first, then the setup, the numbers and the figures."""

from __future__ import annotations

from pathlib import Path

from .findings import Summary, role
from .grid import ALL


def write_compare_report(
    path: Path,
    *,
    title: str,
    findings: list[str],
    setup: dict,
    summaries: dict,
    strategies: list[str],
    sizes: list,
    notes: list[str],
    images: list[str],
) -> Path:
    from ..files import write_text_atomic

    heads = ["strategy", "role", *[_size_header(s) for s in sizes]]
    accuracy = [
        [name, role(name), *[_accuracy_cell(summaries.get((name, s))) for s in sizes]]
        for name in strategies
    ]
    seconds = [
        [name, role(name), *[_seconds_cell(summaries.get((name, s))) for s in sizes]]
        for name in strategies
    ]
    lines = [f"# {title}", "", "## Findings", ""]
    lines += [f"- {sentence}" for sentence in findings] or ["- No cell finished."]
    lines += ["", "## Setup", "", *_table(["", ""], [[k, v] for k, v in setup.items()]), ""]
    lines += ["## Test accuracy", "", "Mean over seeds, with the lowest and highest.", ""]
    lines += [*_table(heads, accuracy), ""]
    lines += ["## Training time", "", "Mean wall seconds of one fit.", ""]
    lines += [*_table(heads, seconds), ""]
    if images:
        lines += ["## Figures", ""]
        lines += [f"![{Path(image).stem.replace('_', ' ')}]({image})\n" for image in images]
    if notes:
        lines += ["## Notes", "", *[f"- {note}" for note in notes], ""]
    text = "\n".join(lines).rstrip() + "\n"
    write_text_atomic(path, text)
    return path


def _size_header(size) -> str:
    return "all" if size is ALL else f"{size}/class"


def _accuracy_cell(summary: Summary | None) -> str:
    if summary is None:
        return "-"
    if summary.seeds == 1:
        return f"{summary.mean:.3f}"
    return f"{summary.mean:.3f} ({summary.low:.2f}-{summary.high:.2f})"


def _seconds_cell(summary: Summary | None) -> str:
    if summary is None:
        return "-"
    return f"{summary.seconds:.1f}" if summary.seconds < 100 else f"{summary.seconds:.0f}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    def line(cells) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *[line(r) for r in rows]]
