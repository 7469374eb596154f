"""The RunSpec and report.md of a whole-model run (detection, segmentation): what differs per
task is passed in (the model's name and weights, its preprocessing, the report's summary)."""

from __future__ import annotations

from pathlib import Path

from .spec import BackboneSpec, RunSpec, _jsonable
from .store import versions


def whole_model_spec(est, model: str, pretrained_weight_id: str, preprocess: dict, head: dict):
    return RunSpec(
        estimator=type(est).__name__,
        modality=est.modality,
        backbone=BackboneSpec(
            name=model,
            weight_id="tuned",  # the run's own weights, in model.safetensors
            pretrained_weight_id=pretrained_weight_id,
            weights_file=str(est.weights) if est.weights else None,
            trained=True,
            feature_dim=0,
        ),
        preprocess=preprocess,
        task={"kind": est.task_.kind, "classes": list(est.task_.classes)},
        head=dict(head),
        thresholds=None,
        strategy={**est.strategy_.describe(), "reason": est.strategy_reason_},
        params={k: _jsonable(v) for k, v in est.get_params().items()},
        columns={},
        fit=est.fit_info_,
        history=est.history_,
        versions=versions(),
    )


def write_whole_report(est, run_dir: Path, model: str, summary: dict, images: list[str]) -> None:
    """curves.png (when trained here) and report.md: the strategy, the summary, the metrics."""
    from ..report.markdown import write_report
    from ..report.plots import curves_png

    if est.history_:
        curves_png(est.history_, run_dir / "curves.png", title=f"{est.strategy_name_} on {model}")
        images = [*images, "curves.png"]
    info = est.fit_info_
    head = {
        "strategy": est.strategy_name_,
        "why": est.strategy_reason_ or "chosen by the user",
        "task": est.task_.kind,
    }
    tail = {
        "train images": info.get("n_train"),
        "validation images": info.get("n_val"),
        "epochs run": info.get("epochs_run"),
        "best epoch": info.get("best_epoch"),
        "train seconds": info.get("train_seconds"),
        "skipped files": len(est.skipped_),
    }
    write_report(
        run_dir / "report.md",
        title=f"headstart run: {type(est).__name__}",
        summary={**summary, **head, **tail},
        metrics=est.metrics_,
        task=est.task_,
        worst=[],
        images=images,
    )
