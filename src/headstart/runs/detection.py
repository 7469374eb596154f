"""What a detector's run directory holds besides what runs/store.save_run writes for every run:
its RunSpec, and the figures a detection run is judged by (precision-recall at IoU 0.5, a sheet
of validation images with true and predicted boxes, training curves) in report.md."""

from __future__ import annotations

from pathlib import Path

from .whole import whole_model_spec, write_whole_report

SHEET_IMAGES = 12


def detection_spec(est):
    preprocess = {
        "type": "Letterbox",
        "size": est.detector_spec_["size"],
        "pad": 114,
        "input": "RGB scaled to [0, 1], longer side to size, padded right and bottom",
    }
    model = est.detector_spec_["model"]
    return whole_model_spec(est, model, _pretrained_id(est), preprocess, est.detector_spec_)


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
    summary = {
        "model": est.detector_spec_["model"],
        "route": est.detector_spec_["route"],
        "image size": est.detector_spec_["size"],
        "train boxes": est.fit_info_.get("train_boxes"),
    }
    write_whole_report(est, run_dir, est.detector_spec_["model"], summary, images)
