"""What a segmenter's run directory holds besides what runs/store.save_run writes for every run:
its RunSpec, and the figures a segmentation run is judged by (validation images with the true and
predicted masks, training curves) in report.md."""

from __future__ import annotations

from pathlib import Path

from .whole import whole_model_spec, write_whole_report

SHEET_IMAGES = 4


def segmentation_spec(est):
    spec = est.segmenter_spec_
    pretrained = est.segmenter_.backbone.weight_id if est.strategy_.pretrained else "random-init"
    preprocess = {
        "type": "Tiles",
        "channels": spec["channels"],
        "tile": spec["tile"],
        "input": "float in [0, 1] (8-bit /255; 16-bit and volumes by their 0.5-99.5th "
        "percentiles); grey repeated into the encoder's 3 channels; ImageNet mean and std",
    }
    return whole_model_spec(est, spec["model"], str(pretrained), preprocess, spec)


def write_segmentation_artifacts(est, run_dir: Path) -> None:
    from ..data.masks import load_image
    from ..report.segmentation import masks_sheet_png

    images = []
    if est.val_items_:
        shown = est.val_items_[:SHEET_IMAGES]
        masks_sheet_png(
            [load_image(item) for item in shown],
            est.val_truth_[:SHEET_IMAGES],
            est.val_predictions_[:SHEET_IMAGES],
            est.task_.classes,
            [item.id for item in shown],
            run_dir / "predictions.png",
        )
        images.append("predictions.png")
    spec = est.segmenter_spec_
    summary = {
        "encoder": spec["model"],
        "decoder": "U-Net",
        "classes": ", ".join(est.task_.classes),
        "training crop": spec["crop"],
        "prediction tile": spec["tile"],
    }
    write_whole_report(est, run_dir, spec["model"], summary, images)
