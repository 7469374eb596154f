"""What a segmenter's run directory holds besides what runs/store.save_run writes for every run:
its RunSpec, and the figures a segmentation run is judged by (validation images with the true and
predicted masks, training curves) in report.md."""

from __future__ import annotations

from pathlib import Path

from .spec import BackboneSpec, RunSpec, _jsonable
from .store import versions

SHEET_IMAGES = 4


def segmentation_spec(est) -> RunSpec:
    model = est.segmenter_spec_["model"]
    backbone = est.segmenter_.backbone
    return RunSpec(
        estimator=type(est).__name__,
        modality=est.modality,
        backbone=BackboneSpec(
            name=model,
            weight_id="tuned",  # the run's own weights, in model.safetensors
            pretrained_weight_id=str(backbone.weight_id)
            if est.strategy_.pretrained
            else "random-init",
            weights_file=str(est.weights) if est.weights else None,
            trained=True,
            feature_dim=0,
        ),
        preprocess={
            "type": "Tiles",
            "channels": est.segmenter_spec_["channels"],
            "tile": est.segmenter_spec_["tile"],
            "input": "float in [0, 1] (8-bit /255; 16-bit and volumes by their 0.5-99.5th "
            "percentiles); grey repeated into the encoder's 3 channels; ImageNet mean and std",
        },
        task={"kind": est.task_.kind, "classes": list(est.task_.classes)},
        head=dict(est.segmenter_spec_),
        thresholds=None,
        strategy={**est.strategy_.describe(), "reason": est.strategy_reason_},
        params={k: _jsonable(v) for k, v in est.get_params().items()},
        columns={},
        fit=est.fit_info_,
        history=est.history_,
        versions=versions(),
    )


def write_segmentation_artifacts(est, run_dir: Path) -> None:
    from ..data.masks import load_image
    from ..report.markdown import write_report
    from ..report.plots import curves_png
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
    if est.history_:
        title = f"{est.strategy_name_} on {est.segmenter_spec_['model']}"
        curves_png(est.history_, run_dir / "curves.png", title=title)
        images.append("curves.png")
    info = est.fit_info_
    summary = {
        "encoder": est.segmenter_spec_["model"],
        "decoder": "U-Net",
        "strategy": est.strategy_name_,
        "why": est.strategy_reason_ or "chosen by the user",
        "task": "segmentation",
        "classes": ", ".join(est.task_.classes),
        "training crop": est.segmenter_spec_["crop"],
        "prediction tile": est.segmenter_spec_["tile"],
        "train images": info.get("n_train"),
        "validation images": info.get("n_val"),
        "epochs run": info.get("epochs_run"),
        "best epoch": info.get("best_epoch"),
        "train seconds": info.get("train_seconds"),
        "skipped files": len(est.skipped_),
    }
    write_report(
        run_dir / "report.md",
        title="headstart run: Segmenter",
        summary=summary,
        metrics=est.metrics_,
        task=est.task_,
        worst=[],
        images=images,
    )
