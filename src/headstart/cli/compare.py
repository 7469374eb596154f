"""headstart compare: what transfer buys on the user's data, against training from scratch."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from .console import err, out


def compare(
    data: Annotated[
        Path,
        typer.Argument(help="Class-folder tree, CSV with path and label, or a text table."),
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for results.csv, figures, report.md.")
    ],
    val: Annotated[
        Path | None, typer.Option(help="Test data (else fit's seeded split, per seed).")
    ] = None,
    val_fraction: Annotated[float, typer.Option(help="Test share when no --val.")] = 0.2,
    model: Annotated[str, typer.Option(help="Backbone (default: by modality).")] = "",
    strategies: Annotated[
        str,
        typer.Option(
            help="Comma-separated (default: linear-probe, freeze-unfreeze, from-scratch and the "
            "no-transfer baseline: tfidf for texts, pixels for images where available)."
        ),
    ] = "",
    per_class: Annotated[
        str, typer.Option(help="Labels per class to train with, comma-separated; 'all' keeps all.")
    ] = "1,5,10,all",
    seeds: Annotated[int, typer.Option(min=1, help="Seeds 0..N-1 for every cell.")] = 3,
    epochs: Annotated[int, typer.Option(min=1, help="Epochs of trainable strategies.")] = 5,
    text_col: Annotated[str | None, typer.Option(help="Text column of a table.")] = None,
    label_col: Annotated[str | None, typer.Option(help="Label column of a table.")] = None,
    budget: Annotated[
        str | None,
        typer.Option(
            help="Time per fit, e.g. 2m: adds auto (planned within it) to the default "
            "strategies; every trained fit stops there."
        ),
    ] = None,
) -> None:
    """Fit every strategy at every labels-per-class size with every seed; write results.csv,
    learning_curve.png, cost.png and report.md to --out. A rerun reuses finished cells.
    A detection or segmentation set: each strategy once, with the same model and budget."""
    from ..compare import compare as run_compare
    from ..tasks import own_estimator_task

    own = own_estimator_task("auto", data)
    if own is not None:
        from .whole import compare_whole

        chosen = [s.strip() for s in strategies.split(",") if s.strip()] if strategies else None
        options = {"val": val, "strategies": chosen, "model": model, "epochs": epochs}
        options.update(budget=budget, val_fraction=val_fraction)
        compare_whole(own, data, out_dir, options)
        return

    with _grid_progress() as progress:
        result = run_compare(
            data,
            out_dir,
            val=val,
            model=model,
            strategies=strategies or None,
            per_class=per_class,
            seeds=seeds,
            epochs=epochs,
            val_fraction=val_fraction,
            text_col=text_col,
            label_col=label_col,
            progress=progress,
            budget=budget,
        )
    if result.reused:
        err.print(
            f"reused {result.reused} finished cells from {out_dir / 'results.csv'} "
            "(same data, model and epochs)",
            markup=False,
        )
    if result.moved:
        err.print(
            f"{result.moved} rows of other settings (data, model or epochs changed) were not "
            f"reused; moved to {out_dir / 'results.previous.csv'}",
            markup=False,
        )
    if result.failed:
        err.print(f"{len(result.failed)} cells failed; see report.md", markup=False)
    for sentence in result.findings:
        out.print(sentence, markup=False)
    err.print(
        f"{result.ran} cells in {result.seconds:.0f} s; wrote "
        + ", ".join(str(p) for p in result.files),
        markup=False,
    )


@contextmanager
def _grid_progress() -> Iterator:
    """A bar over the whole grid with the time left on a terminal; one line per cell elsewhere."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if not err.is_terminal or os.environ.get("HEADSTART_NO_PROGRESS"):
        yield _log_line
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        task = None

        def update(done: int, total: int, cell, row) -> None:
            nonlocal task
            if task is None:  # the bar starts at the reused cells, so the estimate ignores them
                task = bar.add_task("compare", total=total, completed=done)
            bar.update(task, completed=done, description=cell.label)
            if row is not None:
                bar.console.print(_cell_line(done, total, cell, row), markup=False)

        yield update


def _log_line(done: int, total: int, cell, row) -> None:
    if row is not None:
        err.print(_cell_line(done, total, cell, row), markup=False)


def _cell_line(done: int, total: int, cell, row: dict) -> str:
    where = f"[{done}/{total}] {cell.label}"
    if row["status"] != "ok":
        return f"{where}: {row['status']}"
    return (
        f"{where}: accuracy {row['accuracy']:.3f}, {row['n_train']} training examples, "
        f"{row['train_seconds']:.1f} s"
    )
