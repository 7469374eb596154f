"""From results rows to numbers per strategy and size, and to sentences a person can act on.

Every sentence is computed from the rows; none is a template that could say "transfer helps"
when it did not. A difference counts as clear only when the ranges over seeds do not overlap.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from .grid import ALL, CONTROL, strategy_kind


@dataclass
class Summary:
    """One strategy at one labels-per-class size, over its seeds."""

    strategy: str
    per_class: int | None
    accuracy: list[float]
    macro_f1: list[float]
    train_seconds: list[float]
    predict_seconds: list[float]
    n_train: list[int]
    trainable_parameters: int

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracy)

    @property
    def low(self) -> float:
        return min(self.accuracy)

    @property
    def high(self) -> float:
        return max(self.accuracy)

    @property
    def seconds(self) -> float:
        return statistics.fmean(self.train_seconds)

    @property
    def seeds(self) -> int:
        return len(self.accuracy)


def summarise(rows: list[dict], strategies: list[str], sizes: list) -> dict:
    """{(strategy, size): Summary} over the rows that finished, in grid order."""
    out = {}
    for strategy in strategies:
        for size in sizes:
            mine = [
                r
                for r in rows
                if r["strategy"] == strategy and _size(r["per_class"]) == size and _ok(r)
            ]
            if not mine:
                continue
            out[strategy, size] = Summary(
                strategy,
                size,
                [float(r["accuracy"]) for r in mine],
                [float(r["macro_f1"]) for r in mine],
                [float(r["train_seconds"]) for r in mine],
                [float(r["predict_seconds"]) for r in mine],
                [int(r["n_train"]) for r in mine],
                int(mine[0]["trainable_parameters"]),
            )
    return out


def _size(value):
    return ALL if value in ("all", None) else int(value)


def _ok(row: dict) -> bool:
    return row.get("status") == "ok"


def role(strategy: str) -> str:
    """'transfer' (pre-trained backbone), 'scratch' (same network, random init) or 'baseline'
    (no backbone at all: tfidf, pixels)."""
    kind = strategy_kind(strategy)
    return {"classic": "baseline", "scratch": "scratch"}.get(kind, "transfer")


def size_phrase(size, all_per_class: float | None = None) -> str:
    if size is ALL:
        return f"all labels (~{all_per_class:.0f} per class)" if all_per_class else "all labels"
    return f"{size} label per class" if size == 1 else f"{size} labels per class"


def labels_per_class_at_all(summaries: dict, n_classes: int) -> float | None:
    """Mean training labels per class in the 'all' cells (None when there are none)."""
    found = [s for (_, size), s in summaries.items() if size is ALL]
    if not found or n_classes < 1:
        return None
    return statistics.fmean(found[0].n_train) / n_classes


def sentences(summaries: dict, strategies: list[str], sizes: list, n_classes: int) -> list[str]:
    """The findings, in order: one comparison per size, then labels saved, then time."""
    at_all = labels_per_class_at_all(summaries, n_classes)
    phrase = {size: size_phrase(size, at_all) for size in sizes}
    roles = {s: role(s) for s in strategies}
    out = [_size_sentence(summaries, roles, size, phrase[size]) for size in sizes]
    out = [s for s in out if s]
    saved = _labels_saved(summaries, roles, sizes, phrase)
    if saved:
        out.append(saved)
    timing = _time_sentence(summaries, strategies)
    if timing:
        out.append(timing)
    return out


def _best(summaries: dict, names: list[str], size) -> Summary | None:
    found = [summaries[n, size] for n in names if (n, size) in summaries]
    return max(found, key=lambda s: s.mean) if found else None


def _size_sentence(summaries: dict, roles: dict, size, where: str) -> str:
    transfer = _best(summaries, [n for n, r in roles.items() if r == "transfer"], size)
    controls = [
        summaries[n, size] for n, r in roles.items() if r != "transfer" and (n, size) in summaries
    ]
    if transfer is None or not controls:
        ranked = sorted((s for (_, z), s in summaries.items() if z == size), key=lambda s: -s.mean)
        if not ranked:
            return ""
        rest = ", ".join(f"{s.strategy} {s.mean:.2f}" for s in ranked[1:])
        return f"With {where}, {ranked[0].strategy} scored best at {ranked[0].mean:.2f}" + (
            f" (then {rest})." if rest else "."
        )
    against = " and ".join(
        f"{_pair(transfer.mean, c.mean)[1]} {_control_name(c)}" for c in controls
    )
    first = _pair(transfer.mean, max(c.mean for c in controls))[0]
    text = f"With {where}, {transfer.strategy} reached {first} against {against}"
    scratch = next((c for c in controls if c.strategy == CONTROL), None)
    if scratch is not None:
        text += _time_phrase(transfer.seconds, scratch.seconds)
    text += "."
    verdicts = [_verdict(transfer, c) for c in controls]
    untested = [
        c.strategy
        for c in controls
        if transfer.mean > c.mean and (transfer.seeds == 1 or c.seeds == 1)
    ]
    if untested:  # one sentence for all of them
        verdicts.append(f"With one seed, the lead over {' and '.join(untested)} is untested.")
    return " ".join([text, *[v for v in verdicts if v]])


def _control_name(summary: Summary) -> str:
    if summary.strategy == CONTROL:
        return "from scratch"
    if role(summary.strategy) == "baseline":
        return f"from {summary.strategy} (no transfer)"
    return f"from {summary.strategy}"


def _pair(a: float, b: float) -> tuple[str, str]:
    """Both numbers with the fewest decimals (2 or 3) that tell them apart."""
    for digits in (2, 3):
        left, right = f"{a:.{digits}f}", f"{b:.{digits}f}"
        if left != right:
            return left, right
    return left, right


def _time_phrase(seconds: float, control_seconds: float) -> str:
    if seconds <= 0 or control_seconds <= 0:
        return ""
    ratio = seconds / control_seconds
    if ratio <= 0.5:
        return f", in 1/{round(1 / ratio)} of the time"
    if ratio < 1.5:
        return ", in about the same time"
    return f", but took {ratio:.1f} times as long"


def _verdict(transfer: Summary, control: Summary) -> str:
    """An honest sentence unless transfer is clearly better (seed ranges apart)."""
    if transfer.seeds > 1 and control.seeds > 1 and transfer.low > control.high:
        return ""
    if transfer.mean > control.mean:
        if transfer.seeds == 1 or control.seeds == 1:
            return ""  # said once for every control, by the caller
        return (
            f"Its lead over {control.strategy} is within the spread over seeds "
            f"({transfer.low:.2f}-{transfer.high:.2f} against {control.low:.2f}-"
            f"{control.high:.2f}), so it is not a clear win."
        )
    ours, theirs = _pair(transfer.mean, control.mean)
    return (
        f"Here transfer did not beat {control.strategy}: the best pre-trained strategy, "
        f"{transfer.strategy}, scored {ours}, against {theirs}."
    )


def _labels_saved(summaries: dict, roles: dict, sizes: list, phrase: dict) -> str:
    """The fewest labels at which transfer matched the control's score at the largest size."""
    largest = sizes[-1]
    control = summaries.get((CONTROL, largest))
    transfer_names = [n for n, r in roles.items() if r == "transfer"]
    if control is None or not transfer_names:
        return ""
    for size in sizes:
        best = _best(summaries, transfer_names, size)
        if best is not None and best.mean >= control.mean:
            if size == largest:
                return ""  # said in that size's sentence already
            return (
                f"With only {phrase[size]}, {best.strategy} ({best.mean:.2f}) already matched "
                f"from-scratch with {phrase[largest]} ({control.mean:.2f})."
            )
    return (
        f"No pre-trained strategy matched from-scratch with {phrase[largest]} "
        f"({control.mean:.2f}) at any size measured."
    )


def _time_sentence(summaries: dict, strategies: list[str]) -> str:
    totals = {}
    for (name, _), summary in summaries.items():
        totals[name] = totals.get(name, 0.0) + sum(summary.train_seconds)
    if not totals:
        return ""
    parts = [f"{name} {_seconds(totals[name])}" for name in strategies if name in totals]
    return f"Training time summed over every size and seed: {', '.join(parts)}."


def _seconds(value: float) -> str:
    if value < 10:
        return f"{value:.1f} s"
    if value < 600:
        return f"{value:.0f} s"
    return f"{value / 60:.0f} min"
