"""The `auto` strategy: chosen from the data size and what the cached features say."""

from __future__ import annotations

from collections.abc import Callable

from ..modalities import get_modality

FEW_PER_CLASS = 20
PROBE_GOOD_ENOUGH = 0.97


def choose_strategy(
    task_kind: str,
    counts: dict[str, int],
    probe_cv_accuracy: float | None,
    device_type: str,
    modality: str = "image",
    layer_scan: Callable[[], dict | None] | None = None,
) -> tuple[str, str]:
    """(strategy, reason in one sentence).

    layer_scan, when given, is called only where the backbone is to be trained; its advice
    (select.layers.recommend_unfreeze) says how many groups from the top to train."""
    from ..tasks import TASKS

    if not TASKS[task_kind].one_class_per_item:  # label sets, numbers
        return (
            "linear-probe",
            f"{task_kind} task: a linear head on frozen features is the safe start",
        )
    smallest = min(counts.values())
    if smallest < FEW_PER_CLASS:
        return "linear-probe", (
            f"few labels ({smallest} in the smallest class, under {FEW_PER_CLASS}): training the "
            "backbone would overfit, a linear probe on frozen features is the most reliable"
        )
    if probe_cv_accuracy is not None and probe_cv_accuracy >= PROBE_GOOD_ENOUGH:
        return "linear-probe", (
            f"frozen features already separate the classes (cross-validated probe accuracy "
            f"{probe_cv_accuracy:.3f}); fine-tuning has little to add"
        )
    total = sum(counts.values())
    kind = get_modality(modality)
    enough = kind.fine_tune_rows is not None and total >= kind.fine_tune_rows
    if enough and device_type == "cuda":
        return "fine-tune", (
            f"{total} labelled {kind.plural} (at least {kind.fine_tune_rows}) and a GPU: "
            f"fine-tuning every layer of the backbone, the standard recipe for {kind.plural}, "
            "is affordable and usually beats a frozen probe at this size"
        )
    if device_type == "cpu" and sum(counts.values()) > 5000:
        return "linear-probe", "large data on a CPU: fine-tuning would take hours; probe first"
    probe = f"{probe_cv_accuracy:.3f}" if probe_cv_accuracy is not None else "unknown"
    reason = (
        f"{smallest}+ labels per class and a probe accuracy of {probe} leave room to adapt the "
        "backbone: head first, then all layers with small rates"
    )
    advice = layer_scan() if layer_scan is not None else None
    if not advice or advice["unfreeze"] >= advice["groups"]:
        return "freeze-unfreeze", reason + (f"; layer scan: {advice['reason']}" if advice else "")
    return f"freeze-unfreeze:groups={advice['unfreeze']}", (
        f"{reason.replace('then all layers', 'then the top groups')}; layer scan: "
        f"{advice['reason']}"
    )
