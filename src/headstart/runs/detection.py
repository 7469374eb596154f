"""What a detector's run directory holds besides what runs/store.save_run writes for every run:
its RunSpec, and the figures a detection run is judged by (precision-recall at IoU 0.5, a sheet
of validation images with true and predicted boxes, training curves) in report.md."""

from __future__ import annotations

from pathlib import Path

from .spec import BackboneSpec, RunSpec, _jsonable
from .store import versions

SHEET_IMAGES = 12


def detection_spec(est) -> RunSpec:
    model = est.detector_spec_["model"]
    return RunSpec(
        estimator=type(est).__name__,
        modality=est.modality,
        backbone=BackboneSpec(
            name=model,
            weight_id="tuned",  # the run's own weights, in model.safetensors
            pretrained_weight_id=_pretrained_id(est),
            weights_file=str(est.weights) if est.weights else None,
            trained=True,
            feature_dim=0,
        ),
        preprocess={
            "type": "Letterbox",
            "size": est.detector_spec_["size"],
            "pad": 114,
            "input": "RGB scaled to [0, 1], longer side to size, padded right and bottom",
        },
        task={"kind": est.task_.kind, "classes": list(est.task_.classes)},
        head=dict(est.detector_spec_),
        thresholds=None,
        strategy={**est.strategy_.describe(), "reason": est.strategy_reason_},
        params={k: _jsonable(v) for k, v in est.get_params().items()},
        columns={},
        fit=est.fit_info_,
        history=est.history_,
        versions=versions(),
    )


def _pretrained_id(est) -> str:
    if not est.strategy_.pretrained:
        return "random-init"
    from ..zoo.detector_entries import DETECTORS

    model = est.detector_spec_["model"]
    if model in DETECTORS:
        return DETECTORS[model].weights.sha256 or ""
    return str(getattr(est.detector_.backbone, "weight_id", ""))


def write_detection_artifacts(est, run_dir: Path) -> None:
    from ..report.detection import boxes_sheet_png, pr_curve_png
    from ..report.markdown import write_report
    from ..report.plots import curves_png

    images = []
    metrics = est.metrics_
    if metrics.get("pr_curve"):
        pr_curve_png(metrics["pr_curve"], metrics["per_class"], run_dir / "pr_curve.png")
        images.append("pr_curve.png")
    if est.val_items_:
        shown = est.val_items_[:SHEET_IMAGES]
        boxes_sheet_png(
            shown,
            est.val_predictions_[:SHEET_IMAGES],
            est.task_.classes,
            run_dir / "predictions.png",
            threshold=est.score_threshold,
        )
        images.append("predictions.png")
    if est.history_:
        title = f"{est.strategy_name_} on {est.detector_spec_['model']}"
        curves_png(est.history_, run_dir / "curves.png", title=title)
        images.append("curves.png")
    info = est.fit_info_
    summary = {
        "model": est.detector_spec_["model"],
        "route": est.detector_spec_["route"],
        "strategy": est.strategy_name_,
        "why": est.strategy_reason_ or "chosen by the user",
        "task": "detection",
        "image size": est.detector_spec_["size"],
        "train images": info.get("n_train"),
        "train boxes": info.get("train_boxes"),
        "validation images": info.get("n_val"),
        "epochs run": info.get("epochs_run"),
        "best epoch": info.get("best_epoch"),
        "train seconds": info.get("train_seconds"),
        "skipped files": len(est.skipped_),
    }
    write_report(
        run_dir / "report.md",
        title="headstart run: ObjectDetector",
        summary=summary,
        metrics=metrics,
        task=est.task_,
        worst=[],
        images=images,
    )
