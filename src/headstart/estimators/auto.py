"""The `auto` strategy: chosen from the data size and what the cached features say."""

from __future__ import annotations

from collections.abc import Callable

FEW_PER_CLASS = 20
PROBE_GOOD_ENOUGH = 0.97
TEXT_FINE_TUNE_ROWS = 1000  # labelled texts from which fine-tuning the encoder on a GPU pays


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
    if task_kind != "classification":
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
    if modality == "text" and device_type == "cuda" and total >= TEXT_FINE_TUNE_ROWS:
        return "fine-tune", (
            f"{total} labelled texts (at least {TEXT_FINE_TUNE_ROWS}) and a GPU: fine-tuning "
            "every layer of the encoder, the standard recipe for text, is affordable and "
            "usually beats a frozen probe at this size"
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
