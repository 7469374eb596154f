"""The `auto` strategy: chosen from the data size and what the cached features say."""

from __future__ import annotations

FEW_PER_CLASS = 20
PROBE_GOOD_ENOUGH = 0.97


def choose_strategy(
    task_kind: str, counts: dict[str, int], probe_cv_accuracy: float | None, device_type: str
) -> tuple[str, str]:
    """(strategy, reason in one sentence)."""
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
    if device_type == "cpu" and sum(counts.values()) > 5000:
        return "linear-probe", "large data on a CPU: fine-tuning would take hours; probe first"
    probe = f"{probe_cv_accuracy:.3f}" if probe_cv_accuracy is not None else "unknown"
    return "freeze-unfreeze", (
        f"{smallest}+ labels per class and a probe accuracy of {probe} leave room to adapt the "
        "backbone: head first, then all layers with small rates"
    )
