"""The human-facing part of a run directory: plots and the Markdown report."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_artifacts(est, run_dir: Path) -> None:
    from ..report.markdown import worst_examples, write_report
    from ..report.plots import curves_png

    images = []
    metrics = est.metrics_
    title = f"Validation confusion matrix ({metrics.get('n')})"
    if write_confusion(est, metrics, run_dir / "confusion_matrix.png", title):
        images.append("confusion_matrix.png")
    if est.history_:
        curves_png(
            est.history_,
            run_dir / "curves.png",
            title=f"{est.strategy_name_} on {est.backbone_.name}",
        )
        images.append("curves.png")
    worst = []
    if est.val_items_ and est.val_outputs_ is not None:
        targets = est.task_.targets([i.label for i in est.val_items_])
        worst = worst_examples(est.task_, [i.id for i in est.val_items_], targets, est.val_outputs_)
        texts = {i.id: i.text for i in est.val_items_ if i.text is not None}
        for row in worst:  # a row number alone says little about a text
            if row["id"] in texts:
                row["text"] = _excerpt(texts[row["id"]])
    write_report(
        run_dir / "report.md",
        title=f"headstart run: {type(est).__name__}",
        summary=summary(est),
        metrics=metrics,
        task=est.task_,
        worst=worst,
        images=images,
    )


def summary(est) -> dict:
    info = est.fit_info_
    probe = info.get("probe", {})
    out = {
        "model": est.backbone_.name if est.backbone_ is not None else "none (no backbone)",
        "strategy": est.strategy_name_,
        "why": est.strategy_reason_ or "chosen by the user",
        "task": est.task_.kind,
        "train items": info.get("n_train"),
        "validation items": info.get("n_val"),
        "fit seconds": round(info.get("total_seconds", info.get("fit_seconds", 0.0)), 1),
        "skipped items": len(getattr(est, "skipped_", [])),
    }
    if "truncated_rows" in info:  # texts longer than the encoder reads
        out[f"truncated texts (over {info.get('max_length')} tokens)"] = info["truncated_rows"]
    if "val_accuracy" in probe:
        out["linear-probe validation accuracy"] = round(probe["val_accuracy"], 4)
    return out


def _excerpt(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def write_confusion(est, metrics: dict, path: Path, title: str) -> bool:
    """The confusion-matrix PNG when the metrics have one (classification); True if written."""
    if "confusion_matrix" not in metrics:
        return False
    from ..report.plots import confusion_matrix_png

    confusion_matrix_png(
        np.array(metrics["confusion_matrix"]), est.task_.classes, path, title=title
    )
    return True
