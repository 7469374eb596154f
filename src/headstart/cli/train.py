"""fit, evaluate, predict: the ImageClassifier and TextClassifier on the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import HeadstartError
from ..predict import records
from .console import DEVICE_HELP, PRECISION_HELP, PREPROCESS_HELP, err, out, parse_settings

TASK_HELP = (
    "auto, classification, multilabel, regression, detection (VOC, COCO, YOLO sets), "
    "segmentation (images with masks, NIfTI or DICOM with label volumes)."
)
TEXT_COL_HELP = "Text column of a table (default: text, else sentence)."
LABEL_COL_HELP = "Label column of a table (default: label)."
BUDGET_HELP = (
    "Time for the whole fit, e.g. 30s, 5m, 1h: auto picks the model and strategy that fit it; "
    "training stops there, keeping the best so far."
)
RUN_TEXT_COL = "Text column of a table (default: the run's, from fit)."
RUN_LABEL_COL = "Label column of a table (default: the run's, from fit)."


def _estimator_for(modality: str):
    from .. import estimators
    from ..modalities import MODALITIES, get_modality

    cls = getattr(estimators, get_modality(modality).estimator, None)
    if cls is None:
        known = ", ".join(m.plural for m in MODALITIES.values() if m.estimator)
        raise HeadstartError(f"Training on {modality} data is not available yet ({known} are).")
    return cls


def fit(
    data: Annotated[
        Path,
        typer.Argument(help="Class-folder tree, CSV with path and label, or a text table."),
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")],
    val: Annotated[Path | None, typer.Option(help="Validation data (else a split).")] = None,
    val_fraction: Annotated[
        float, typer.Option(help="Validation share when no --val (0: train on everything).")
    ] = 0.2,
    model: Annotated[
        str,
        typer.Option(help="Backbone (default: by modality); auto: rank the bundled ones first."),
    ] = "",
    strategy: Annotated[
        str,
        typer.Option(
            help="linear-probe, mlp-head, fine-tune, freeze-unfreeze, gradual, from-scratch, "
            "tfidf (texts), pixels (images) or mfcc (audio): no backbone, the control; auto."
        ),
    ] = "auto",
    epochs: Annotated[int, typer.Option(min=1)] = 5,
    seed: Annotated[int, typer.Option()] = 0,
    per_class: Annotated[int | None, typer.Option(min=1, help="Keep K labels per class.")] = None,
    task: Annotated[str, typer.Option(help=TASK_HELP)] = "auto",
    text_col: Annotated[str | None, typer.Option(help=TEXT_COL_HELP)] = None,
    label_col: Annotated[str | None, typer.Option(help=LABEL_COL_HELP)] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    lr_decay: Annotated[float | None, typer.Option(help="Layer-wise LR decay per group.")] = None,
    label_smoothing: Annotated[float, typer.Option()] = 0.1,
    l2sp: Annotated[float, typer.Option(help="Pull weights towards pre-trained (L2-SP).")] = 0.0,
    patience: Annotated[
        int | None,
        typer.Option(help="Early-stopping patience in epochs (default 3; detection: none)."),
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1)] = None,
    weights: Annotated[Path | None, typer.Option(help="Local weights file for --model.")] = None,
    precision: Annotated[str, typer.Option(help=PRECISION_HELP)] = "auto",
    device: Annotated[str, typer.Option(help=DEVICE_HELP)] = "auto",
    no_augment: Annotated[bool, typer.Option("--no-augment")] = False,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted fit in --out.")] = False,
    budget: Annotated[str | None, typer.Option(help=BUDGET_HELP)] = None,
    preprocess: Annotated[str | None, typer.Option(help=PREPROCESS_HELP)] = None,
    size: Annotated[
        int | None,
        typer.Option(
            help="Detection: side images are letterboxed to (416); segmentation: crop (256)."
        ),
    ] = None,
) -> None:
    """Fit a new head (and, by strategy, the backbone) on DATA; write RUN_DIR."""
    from ..data.sources import read_source
    from ..tasks import own_estimator_task

    own = own_estimator_task(task, data)
    if own is not None:  # detection, segmentation: a whole model is trained
        from .whole import fit_whole, refuse_options

        refuse_options(
            own,
            {
                "--per-class": per_class,
                "--text-col": text_col,
                "--label-col": label_col,
                "--lr-decay": lr_decay,
                "--l2sp": l2sp or None,
                "--label-smoothing": None if label_smoothing == 0.1 else label_smoothing,
                "--resume": resume or None,
                "--preprocess": preprocess,
                "--precision": None if precision == "auto" else precision,
            },
        )
        options = dict(model=model, strategy=strategy, epochs=epochs, size=size, seed=seed)
        options.update(lr=lr, patience=patience or 0, budget=budget, batch_size=batch_size)
        options.update(weights=str(weights) if weights else None, device=device)
        options.update(augment=not no_augment, val_fraction=val_fraction, precision=precision)
        fit_whole(own, data, out_dir, val, options)
        return
    source = read_source(data, text_col=text_col, label_col=label_col)
    estimator_cls = _estimator_for(source.modality)
    est = estimator_cls(
        model=model,
        strategy=strategy,
        task=task,
        epochs=epochs,
        lr=lr,
        lr_decay=lr_decay,
        batch_size=batch_size,
        seed=seed,
        label_smoothing=label_smoothing,
        l2sp=l2sp,
        patience=3 if patience is None else patience,
        val_fraction=val_fraction,
        per_class=per_class,
        precision=precision,
        device=device,
        weights=str(weights) if weights else None,
        augment=not no_augment,
        budget=budget,
        preprocess=parse_settings(preprocess),
    )
    est.fit(
        source,
        val=val,
        text_col=text_col,
        label_col=label_col,
        run_dir=str(out_dir),
        resume=resume,
    )
    if est.model_selection_:
        chosen = est.model_selection_
        err.print(f"model: {chosen['chosen']} (auto: {chosen['reason']})", markup=False)
    err.print(
        f"strategy: {est.strategy_name_}"
        + (f" ({est.strategy_reason_})" if est.strategy_reason_ else ""),
        markup=False,
    )
    # auto on small data: out-of-fold predictions of every item stand as the validation
    where = est.fit_info_.get("validation", "validation")
    if est.metrics_:
        out.print(metrics_line(est.metrics_, where), markup=False)
    else:
        out.print(
            "validation: none (a class has a single item: nothing to hold out; score the run on "
            "labelled data with `headstart evaluate RUN DATA`)",
            markup=False,
        )
    err.print(f"fit in {est.fit_info_['total_seconds']:.1f} s; wrote {out_dir}", markup=False)


def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by fit.")],
    data: Annotated[Path, typer.Argument(help="Labelled data to evaluate on.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    text_col: Annotated[str | None, typer.Option(help=RUN_TEXT_COL)] = None,
    label_col: Annotated[str | None, typer.Option(help=RUN_LABEL_COL)] = None,
    task: Annotated[str | None, typer.Option(help="Check the run's task: " + TASK_HELP)] = None,
) -> None:
    """Metrics of a fitted run on labelled DATA; writes a confusion matrix next to the run."""
    est = load_any(run_dir)
    _check_task(est, task, run_dir)
    metrics = est.evaluate(data, text_col=text_col, label_col=label_col)
    target = run_dir / f"eval-{Path(data).resolve().name}"
    target.mkdir(exist_ok=True)
    from ..runs.store import write_json

    write_json(target / "metrics.json", metrics)
    from ..runs.artifacts import write_confusion

    title = f"Confusion matrix on {Path(data).name} ({metrics['n']})"
    write_confusion(est, metrics, target / "confusion_matrix.png", title)  # when it has one
    if as_json:
        out.print_json(json.dumps(metrics))
    else:
        out.print(metrics_line(metrics, str(data)), markup=False)
    err.print(f"wrote {target}/", markup=False)


def predict(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by fit.")],
    inputs: Annotated[
        list[Path] | None,
        typer.Argument(help="Image files or folders; text tables for a text run."),
    ] = None,
    text: Annotated[
        list[str] | None,
        typer.Option("--text", help="A text to classify (text runs; repeatable)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    text_col: Annotated[str | None, typer.Option(help=RUN_TEXT_COL)] = None,
    task: Annotated[str | None, typer.Option(help="Check the run's task: " + TASK_HELP)] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Segmentation: folder for masks and overlays (./masks)."),
    ] = None,
) -> None:
    """Label and probability for each input; an unreadable input gets an error entry.
    Segmentation runs write a mask (PNG, or NIfTI for volumes) and an overlay PNG per input."""
    from ..data.sources import source_from_paths
    from ..modalities import get_modality

    est = load_any(run_dir)
    _check_task(est, task, run_dir)
    inputs, text = inputs or [], text or []
    if hasattr(est, "write_predictions"):  # segmentation: masks are files, not labels
        from .segment import predict_masks

        if text:
            raise HeadstartError(
                f"--text is for text runs; '{run_dir}' segments images. Pass image files, "
                "folders, NIfTI volumes or DICOM series folders."
            )
        predict_masks(est, inputs, out_dir or Path("masks"), as_json)
        return
    modality = get_modality(est.modality)
    if modality.typed_inputs:  # texts: typed with --text, or rows of tables
        _predict_texts(est, inputs, text, as_json, text_col)
        return
    if text:
        raise HeadstartError(
            f"--text is for text runs; '{run_dir}' classifies {modality.plural}. Pass "
            f"{modality.name} files or folders."
        )
    if not inputs:
        raise HeadstartError(
            f"Nothing to predict: pass {modality.name} files or folders after RUN_DIR."
        )
    files: list[Path] = []
    for path in inputs:
        if path.is_dir() and not modality.accepts_file(path):
            files += sorted(
                p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
            )
        else:
            files.append(path)
    source = source_from_paths(files, modality=modality.name)
    rows = records(est, source, order=[str(f) for f in files])
    if as_json:
        out.print_json(json.dumps(rows))
        return
    if rows and any("boxes" in row for row in rows):
        from .detect import print_boxes

        print_boxes(rows)
        return
    for row in rows:
        if "error" in row:
            out.print(f"{row['input']}\terror: {row['error']}", markup=False)
        else:
            out.print(f"{row['input']}\t{row['label']}\t{row.get('probability', '')}", markup=False)


def _predict_texts(
    est, tables: list[Path], texts: list[str], as_json: bool, text_col: str | None
) -> None:
    """--text values first, then every row of every table, in order; ids are FILE:ROW.
    text_col: the tables' text column (default: the one fit read)."""
    from ..data.sources import Skip, Source, read_source, source_from_texts

    if not tables and not texts:
        raise HeadstartError(
            'Nothing to predict: pass --text "..." (repeatable) or a CSV, TSV or JSON Lines '
            "table with a text column."
        )
    items, skipped, order, shown = [], [], [], {}

    def add(source: Source, key, display) -> None:
        rows = [(int(i.id), i) for i in source.items] + [(int(s.id), s) for s in source.skipped]
        for number, entry in sorted(rows, key=lambda pair: pair[0]):
            entry_key = key(number)
            order.append(entry_key)
            shown[entry_key] = display(number)
            if isinstance(entry, Skip):
                skipped.append(Skip(entry_key, entry.reason))
            else:
                entry.id = entry_key
                items.append(entry)

    add(source_from_texts(texts), lambda n: f"--text {n}", lambda n: {"input": texts[n - 1]})
    for path in tables:
        table = read_source(path, text_col=text_col or est.text_col_, labels=False)
        if table.modality != est.modality:
            raise HeadstartError(
                f"'{path}' holds {table.modality}s; this run classifies {est.modality}s. Pass a "
                "CSV, TSV or JSON Lines table with a text column (--text-col), or --text."
            )
        add(table, lambda n, p=path: f"{p}:{n}", lambda n, p=path: {"input": str(p), "row": n})
    rows = []
    for row in records(est, Source(est.modality, items, skipped, origin="inputs"), order=order):
        rows.append({**shown[row["input"]], **{k: v for k, v in row.items() if k != "input"}})
    if as_json:
        out.print_json(json.dumps(rows))
        return
    for row in rows:
        where = f"{row['input']}:{row['row']}" if "row" in row else " ".join(row["input"].split())
        if "error" in row:
            out.print(f"{where}\terror: {row['error']}", markup=False)
        else:
            out.print(f"{where}\t{row['label']}\t{row.get('probability', '')}", markup=False)


def _check_task(est, task: str | None, run_dir: Path) -> None:
    from ..errors import check_choice
    from ..tasks import task_choices

    if task is None or task == "auto":
        return
    check_choice("task", task, task_choices())
    if task != est.task_.kind:
        raise HeadstartError(
            f"--task {task} does not match the run in '{run_dir}', which was fitted for "
            f"{est.task_.kind}. Drop --task, or fit a new run with --task {task}."
        )


def load_any(run_dir: Path):
    from .. import estimators
    from ..runs.store import read_config

    config = read_config(run_dir)
    cls = getattr(estimators, config.get("estimator", ""), None)
    if cls is None:
        raise HeadstartError(
            f"'{run_dir}' was written by an unknown estimator {config.get('estimator')!r}."
        )
    est = cls.load(run_dir)
    est.verbose = False
    return est


def metrics_line(metrics: dict, where: str) -> str:
    keys = ("accuracy", "macro_f1", "micro_f1", "mAP", "map50", "map", "dice", "iou")
    keys += ("pixel_accuracy", "mse", "mae", "r2", "n")
    shown = ", ".join(
        f"{k} {metrics[k]:.4f}" if isinstance(metrics[k], float) else f"{k} {metrics[k]}"
        for k in keys
        if k in metrics
    )
    return f"{where}: {shown}"
