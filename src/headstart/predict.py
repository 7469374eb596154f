"""Prediction records: one dict per input, the shape `headstart predict --json` prints.

The command line (text and JSON output) and the HTTP server build on records(); nothing else
needs to know how a fitted estimator's outputs become rows.
"""

from __future__ import annotations

from pathlib import Path

from .data.sources import Source
from .modalities import get_modality


def records(
    estimator, data, *, top_k: int | None = None, order: list[str] | None = None
) -> list[dict]:
    """One record per input, in input order.

    A usable input gives {"input": id, "label": prediction} plus, for classification,
    "probability" (of the predicted class) and, for multi-label, "probabilities" (per label);
    regression gives the number as "label". An input that cannot be used gives
    {"input": id, "error": reason} instead of failing the rest. top_k (classification): also
    "top", the k most probable classes as [{"label", "probability"}]. Ids are the paths of
    images and 1-based positions of a list of texts (a table's: its row numbers); order lists
    the ids in the order wanted (default: the order of data when it is a list)."""
    if hasattr(estimator, "prediction_records"):  # a task with its own rows (detection)
        return estimator.prediction_records(data, order)
    found = estimator.embeddings(data, labels=False)
    outputs = estimator.predict_proba(found) if found.items else None
    labels = estimator.predict(found) if found.items else []
    task = estimator.task_
    by_id = {}
    for index, (item, label) in enumerate(zip(found.items, labels, strict=True)):
        row = {"input": item.id, "label": label, **task.describe_prediction(outputs[index], top_k)}
        by_id[item.id] = row
    for skip in found.skipped:
        by_id[skip.id] = {"input": skip.id, "error": skip.reason}
    order = order if order is not None else _input_ids(data, estimator.modality)
    rows = [by_id.pop(key) for key in order if key in by_id]
    return rows + list(by_id.values())


def _input_ids(data, modality: str) -> list[str]:
    """The ids a plain list of inputs gets, in its order (else none: keep the found order)."""
    if isinstance(data, Source | str | Path):
        return []
    kind = get_modality(modality)
    return [kind.input_id(value, n) for n, value in enumerate(data, start=1)]
