"""fit, evaluate, predict: the ImageClassifier (and later TextClassifier) on the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import HeadstartError
from .console import err, out

ESTIMATORS = {"image": "ImageClassifier"}


def _estimator_for(modality: str):
    from .. import estimators

    name = ESTIMATORS.get(modality)
    if name is None:
        raise HeadstartError(f"Training on {modality} data is not available yet (images are).")
    return getattr(estimators, name)


def fit(
    data: Annotated[Path, typer.Argument(help="Class-folder tree, or CSV with path and label.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")],
    val: Annotated[Path | None, typer.Option(help="Validation data (else a split).")] = None,
    val_fraction: Annotated[float, typer.Option(help="Validation share when no --val.")] = 0.2,
    model: Annotated[str, typer.Option(help="Backbone (default: by modality).")] = "",
    strategy: Annotated[
        str,
        typer.Option(
            help="linear-probe, mlp-head, fine-tune, freeze-unfreeze, gradual, from-scratch, auto."
        ),
    ] = "auto",
    epochs: Annotated[int, typer.Option(min=1)] = 5,
    seed: Annotated[int, typer.Option()] = 0,
    per_class: Annotated[int | None, typer.Option(min=1, help="Keep K labels per class.")] = None,
    task: Annotated[
        str, typer.Option(help="auto, classification, multilabel, regression.")
    ] = "auto",
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    lr_decay: Annotated[float | None, typer.Option(help="Layer-wise LR decay per group.")] = None,
    label_smoothing: Annotated[float, typer.Option()] = 0.1,
    l2sp: Annotated[float, typer.Option(help="Pull weights towards pre-trained (L2-SP).")] = 0.0,
    patience: Annotated[int, typer.Option(help="Early-stopping patience (epochs).")] = 3,
    batch_size: Annotated[int | None, typer.Option(min=1)] = None,
    weights: Annotated[Path | None, typer.Option(help="Local weights file for --model.")] = None,
    precision: Annotated[str, typer.Option(help="auto, fp32 or bf16.")] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    no_augment: Annotated[bool, typer.Option("--no-augment")] = False,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted fit in --out.")] = False,
) -> None:
    """Fit a new head (and, by strategy, the backbone) on DATA; write RUN_DIR."""
    from ..data.sources import read_source

    source = read_source(data)
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
        patience=patience,
        val_fraction=val_fraction,
        per_class=per_class,
        precision=precision,
        device=device,
        weights=str(weights) if weights else None,
        augment=not no_augment,
        run_dir=str(out_dir),
        resume=resume,
    )
    est.fit(source, val=val)
    err.print(
        f"strategy: {est.strategy_name_}"
        + (f" ({est.strategy_reason_})" if est.strategy_reason_ else ""),
        markup=False,
    )
    out.print(metrics_line(est.metrics_, "validation"), markup=False)
    err.print(f"fit in {est.fit_info_['total_seconds']:.1f} s; wrote {out_dir}", markup=False)


def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by fit.")],
    data: Annotated[Path, typer.Argument(help="Labelled data to evaluate on.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Metrics of a fitted run on labelled DATA; writes a confusion matrix next to the run."""
    est = load_any(run_dir)
    metrics = est.evaluate(data)
    target = run_dir / f"eval-{Path(data).resolve().name}"
    target.mkdir(exist_ok=True)
    from ..runs.store import write_json

    write_json(target / "metrics.json", metrics)
    if "confusion_matrix" in metrics:
        import numpy as np

        from ..report.plots import confusion_matrix_png

        confusion_matrix_png(
            np.array(metrics["confusion_matrix"]),
            est.task_.classes,
            target / "confusion_matrix.png",
            title=f"Confusion matrix on {Path(data).name} ({metrics['n']})",
        )
    if as_json:
        out.print_json(json.dumps(metrics))
    else:
        out.print(metrics_line(metrics, str(data)), markup=False)
    err.print(f"wrote {target}/", markup=False)


def predict(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by fit.")],
    inputs: Annotated[list[Path], typer.Argument(help="Files or folders to predict.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Label and probability for each input; an unreadable input gets an error entry."""
    from ..data.images import is_image_path
    from ..data.sources import source_from_paths

    est = load_any(run_dir)
    files: list[Path] = []
    for path in inputs:
        if path.is_dir() and not is_image_path(path):
            files += sorted(
                p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
            )
        else:
            files.append(path)
    embeddings = est.transform(source_from_paths(files))
    rows = prediction_rows(est, embeddings, [str(f) for f in files])
    if as_json:
        out.print_json(json.dumps(rows))
        return
    for row in rows:
        if "error" in row:
            out.print(f"{row['input']}\terror: {row['error']}", markup=False)
        else:
            out.print(f"{row['input']}\t{row['label']}\t{row.get('probability', '')}", markup=False)


def prediction_rows(est, embeddings, order: list[str]) -> list[dict]:
    """One row per input, in input order: label (and probability) or the reason it failed."""
    outputs = est._outputs_for(embeddings) if embeddings.items else None
    labels = est.decode(outputs) if outputs is not None else []
    found = {}
    for index, (item, label) in enumerate(zip(embeddings.items, labels, strict=True)):
        row = {"input": item.id, "label": label}
        if est.task_.kind == "classification":
            row["probability"] = round(float(outputs[index].max()), 4)
        elif est.task_.kind == "multilabel":
            row["probabilities"] = {
                c: round(float(p), 4)
                for c, p in zip(est.task_.classes, outputs[index], strict=True)
            }
        found[item.id] = row
    for skip in embeddings.skipped:
        found[skip.id] = {"input": skip.id, "error": skip.reason}
    rows = [found.pop(key) for key in order if key in found]
    return rows + list(found.values())


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
    keys = ("accuracy", "macro_f1", "micro_f1", "mAP", "mse", "mae", "r2", "n")
    shown = ", ".join(
        f"{k} {metrics[k]:.4f}" if isinstance(metrics[k], float) else f"{k} {metrics[k]}"
        for k in keys
        if k in metrics
    )
    return f"{where}: {shown}"
