"""compare(): check everything, run the cells not yet in results.csv, then write the figures and
the report from every finished cell of these settings."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..auto.budget import format_seconds, parse_budget
from ..data.sources import Source, read_source
from ..errors import HeadstartError
from . import findings
from .grid import (
    ALL,
    Cell,
    Grid,
    Settings,
    default_strategies,
    estimator_for,
    parse_sizes,
    parse_strategies,
    run_cell,
    strategy_kind,
)
from .plots import cost_png, learning_curve_png
from .report import write_compare_report
from .store import RESULTS, ResultStore

# progress(done, total, cell, row): cell is about to run (row None) or has finished (row given)
Progress = Callable[[int, int, Cell, "dict | None"], None]


@dataclass
class CompareResult:
    rows: list[dict]  # the grid's finished cells, in grid order
    ran: int
    reused: int
    failed: list[dict]
    moved: int  # rows of other settings moved to results.previous.csv
    findings: list[str]
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def compare(
    data,
    out_dir,
    *,
    val=None,
    model: str = "",
    strategies: str | list[str] | None = None,
    per_class: str | list = "1,5,10,all",
    seeds: int = 3,
    epochs: int = 5,
    val_fraction: float = 0.2,
    text_col: str | None = None,
    label_col: str | None = None,
    progress: Progress | None = None,
    budget: str | float | None = None,
) -> CompareResult:
    """Every strategy x labels-per-class size x seed, each cell one fit. budget: seconds (or
    "5m") per fit; it adds `auto` to the default strategies, planned within it."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise HeadstartError(
            f"--out '{out_dir}' is a file; compare writes a folder there. Choose another --out."
        )
    train = read_source(data, text_col=text_col, label_col=label_col)
    modality = train.modality
    estimator_for(modality)
    seconds = parse_budget(budget)
    if strategies is None or strategies == "":
        names = default_strategies(modality) + (["auto"] if seconds is not None else [])
    else:
        names = parse_strategies(
            strategies if isinstance(strategies, str) else ",".join(strategies), modality
        )
    if not isinstance(per_class, str):
        per_class = ",".join(map(_text, per_class))
    sizes = parse_sizes(per_class)
    if seeds < 1:
        raise HeadstartError(f"--seeds must be at least 1; got {seeds}.")
    val_src = _check_data(train, data, val, text_col, label_col, val_fraction)
    settings = _settings(train, val_src, model, names, epochs, val_fraction, text_col, label_col)
    settings.budget = seconds
    grid = Grid(names, sizes, list(range(seeds)))
    _make_folder(out_dir)  # after every check: a mistyped command leaves nothing behind

    store = ResultStore(out_dir)
    store.load(settings.known_fingerprint)
    todo = [cell for cell in grid.cells if cell not in store.rows]
    reused = len(grid.cells) - len(todo)
    failed = []
    for index, cell in enumerate(todo):
        if progress:
            progress(reused + index, len(grid.cells), cell, None)
        row = run_cell(cell, settings, train, val_src)
        row["settings"] = settings.fingerprint(cell.strategy)
        store.append(row)
        if row["status"] != "ok":
            failed.append(row)
        if progress:
            progress(reused + index + 1, len(grid.cells), cell, row)
    moved = store.rewrite(grid.cells, failed)
    rows = [store.rows[c] for c in grid.cells if c in store.rows]
    result = CompareResult(rows, len(todo), reused, failed, moved, [])
    if not rows:
        first = failed[0]["status"].removeprefix("failed: ") if failed else "nothing ran"
        raise HeadstartError(
            f"Every cell failed, so there is nothing to compare (first: {first}). "
            f"The reasons are in {out_dir / RESULTS}."
        )
    result.files = _write_outputs(result, out_dir, grid, train, val_src, settings, data, val)
    result.seconds = time.perf_counter() - started
    return result


def _text(size) -> str:
    return "all" if size is ALL else str(size)


def _make_folder(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HeadstartError(f"Cannot create --out '{out_dir}' ({exc.strerror or exc}).") from exc


def _check_data(train: Source, data, val, text_col, label_col, val_fraction) -> Source | None:
    """Fail in the first second, not after the first cell, on data no cell could use."""
    from ..data.split import split
    from ..heads import TASKS, detect_task

    if not train.items:
        raise HeadstartError(f"Nothing usable in '{data}': all {len(train.skipped)} items skipped.")
    labels = train.labels
    if labels is None or any(label is None for label in labels):
        raise HeadstartError(
            f"'{data}' has no labels: compare needs class subfolders or a label column."
        )
    kind = detect_task(labels)
    if not TASKS[kind].one_class_per_item:
        raise HeadstartError(
            f"compare measures classification accuracy; the labels of '{data}' look like {kind}."
        )
    if len(train.class_names) < 2:
        raise HeadstartError(f"'{data}' has one class; compare needs at least two.")
    if val is None:
        split(train, val_fraction, 0)  # the same check fit makes: 2+ examples per class
        return None
    val_src = read_source(val, text_col=text_col, label_col=label_col)
    if val_src.modality != train.modality:
        raise HeadstartError(
            f"--val '{val}' holds {val_src.modality}s but '{data}' holds {train.modality}s."
        )
    if not val_src.items or val_src.labels is None or None in val_src.labels:
        raise HeadstartError(f"--val '{val}' needs labelled items to test on.")
    return val_src


def _settings(train, val_src, model, names, epochs, val_fraction, text_col, label_col) -> Settings:
    from ..estimators.base import fingerprint
    from ..zoo import DEFAULT_MODEL, load_backbone

    if epochs < 1:
        raise HeadstartError(f"--epochs must be at least 1; got {epochs}.")
    if any(strategy_kind(name) != "classic" for name in names):
        load_backbone(model, train.modality)  # an unknown --model fails now, not per cell
    return Settings(
        modality=train.modality,
        model=model or DEFAULT_MODEL[train.modality],
        epochs=epochs,
        val_fraction=val_fraction,
        data_id=fingerprint(train.items),
        val_id=fingerprint(val_src.items) if val_src is not None else None,
        text_col=text_col,
        label_col=label_col,
    )


def _write_outputs(result, out_dir, grid, train, val_src, settings, data, val) -> list[Path]:
    summaries = findings.summarise(result.rows, grid.strategies, grid.sizes)
    n_classes = len(train.class_names)
    all_per_class = findings.labels_per_class_at_all(summaries, n_classes)
    result.findings = findings.sentences(summaries, grid.strategies, grid.sizes, n_classes)
    n_test = result.rows[0]["n_test"]
    where = Path(val).name if val is not None else "a held-out split"
    ylabel = f"accuracy on {where} (n={n_test})"
    name = "/".join(Path(data).resolve().parts[-2:])  # "hymenoptera_data/train", not "train"
    curve = learning_curve_png(
        summaries,
        grid.strategies,
        grid.sizes,
        all_per_class,
        out_dir / "learning_curve.png",
        f"Test accuracy against labels per class: {name}",
        ylabel,
    )
    cost = cost_png(
        summaries,
        grid.strategies,
        grid.sizes,
        all_per_class,
        out_dir / "cost.png",
        f"Accuracy against training time: {name}",
        ylabel,
    )
    report = write_compare_report(
        out_dir / "report.md",
        title=f"headstart compare: {name}",
        findings=result.findings,
        setup=_setup(result, grid, settings, data, val, n_test),
        summaries=summaries,
        strategies=grid.strategies,
        sizes=grid.sizes,
        notes=_notes(result, grid, val),
        images=[curve.name, cost.name],
    )
    return [out_dir / RESULTS, curve, cost, report]


def _setup(result, grid, settings, data, val, n_test) -> dict:
    if val is not None:
        test = f"{val} ({n_test} items), the same for every cell"
    else:
        test = (
            f"a held-out {settings.val_fraction:.0%} of {data} ({n_test} items), drawn per seed "
            "exactly as `headstart fit --seed N` draws it"
        )
    trainable = any(strategy_kind(s) in ("trainable", "scratch", "auto") for s in grid.strategies)
    return {
        "data": str(data),
        "test set": test,
        "model": settings.model,
        "strategies": ", ".join(grid.strategies),
        "labels per class": ", ".join(_text(s) for s in grid.sizes),
        "seeds": ", ".join(map(str, grid.seeds)),
        "epochs (trainable strategies)": str(settings.epochs) if trainable else "-",
        "budget per fit": format_seconds(settings.budget) if settings.budget else "none",
        "cells": f"{len(grid.cells)}: {result.ran} run now, {result.reused} reused, "
        f"{len(result.failed)} failed",
    }


def _notes(result, grid, val) -> list[str]:
    notes = [
        "Each cell is `headstart fit DATA --strategy S --per-class K --seed N` with the settings "
        "above, scored by that fit's own pass over the test set (the numbers `headstart "
        "evaluate` gives); results.csv has every cell.",
        "Training time is the wall time of that fit (model build, feature extraction or cache "
        "reads, and fit's own validation passes included). Frozen strategies read cached "
        "features, so after the first cell they cost almost nothing, and their predict time "
        "excludes the backbone's forward pass.",
    ]
    if any(strategy_kind(s) in ("trainable", "scratch") for s in grid.strategies):
        notes.append(
            "Trainable strategies stop early and keep their best epoch by the loss on the test "
            "set, as `headstart fit` does with its validation data; this flatters them slightly."
        )
    linear = [s for s in grid.strategies if _fits_linear_c(s)]
    if 1 in grid.sizes and linear:
        notes.append(
            f"With 1 label per class, {', '.join(linear)} cannot choose the regularisation C of "
            "its linear fit by cross-validation (nothing to hold out), so it uses C=1."
        )
    for row in result.failed:
        notes.append(
            f"Failed: {row['strategy']}, {row['per_class']} per class, seed {row['seed']}: "
            f"{row['status'].removeprefix('failed: ')}"
        )
    return notes


def _fits_linear_c(spec: str) -> bool:
    """Whether the strategy's model (or starting head) is the CV-tuned logistic regression."""
    from ..strategies import STRATEGIES
    from ..strategies.base import parse_strategy

    if spec == "auto":
        return False  # it may or may not be: it chooses per fit
    name = parse_strategy(spec)[0]
    cls = STRATEGIES[name]  # linear-probe and head-first ones start from it; featurisers use it
    return cls.head_first or not cls.needs_backbone
