"""The two compare figures: accuracy against labels per class, and accuracy against time."""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..report.plots import DPI, _figure_class, _save
from .grid import ALL

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def size_positions(sizes: list, all_per_class: float | None) -> dict:
    """x position of each size on a log axis; 'all' sits at its real labels per class when that
    is beyond the largest number asked for, else one step (x2) to the right of it."""
    numbers = [s for s in sizes if s is not ALL]
    positions = {s: float(s) for s in numbers}
    if ALL in sizes:
        right = 2.0 * max(numbers) if numbers else 1.0
        if all_per_class and (not numbers or all_per_class > max(numbers) * 1.2):
            right = all_per_class
        positions[ALL] = right
    return positions


def size_tick(size, all_per_class: float | None) -> str:
    if size is ALL:
        return f"all\n(~{all_per_class:.0f})" if all_per_class else "all"
    return str(size)


def learning_curve_png(
    summaries: dict,
    strategies: list[str],
    sizes: list,
    all_per_class: float | None,
    path: str | os.PathLike,
    title: str,
    ylabel: str,
) -> Path:
    """One line per strategy: mean test accuracy over seeds, with a band from min to max."""
    Figure = _figure_class()
    fig = Figure(figsize=(10, 5), dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    xs = size_positions(sizes, all_per_class)
    for index, name in enumerate(strategies):
        points = [(xs[s], summaries[name, s]) for s in sizes if (name, s) in summaries]
        if not points:
            continue
        x = [p[0] for p in points]
        color = f"C{index % 10}"
        ax.plot(
            x,
            [p[1].mean for p in points],
            marker=MARKERS[index % len(MARKERS)],
            color=color,
            label=name,
        )
        if any(p[1].seeds > 1 for p in points):
            low, high = [p[1].low for p in points], [p[1].high for p in points]
            ax.fill_between(x, low, high, color=color, alpha=0.15, linewidth=0)
    ax.set_xscale("log")
    ax.set_xticks([xs[s] for s in sizes])
    ax.set_xticklabels([size_tick(s, all_per_class) for s in sizes])
    ax.minorticks_off()
    if len(sizes) == 1:
        ax.set_xlim(xs[sizes[0]] / 2, xs[sizes[0]] * 2)
    ax.set_xlabel("labelled training examples per class (log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, wrap=True)
    ax.set_ylim(*_accuracy_limits(summaries))
    ax.grid(True, alpha=0.3)
    if ax.lines:
        _legend(ax, "line: mean\nband: min-max over seeds")
    fig.tight_layout()
    return _save(fig, path)


def cost_png(
    summaries: dict,
    strategies: list[str],
    sizes: list,
    all_per_class: float | None,
    path: str | os.PathLike,
    title: str,
    ylabel: str,
) -> Path:
    """Mean accuracy against mean training wall time, one point per strategy and size, each
    point labelled with its labels per class."""
    Figure = _figure_class()
    fig = Figure(figsize=(10, 5), dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    seconds = []
    for index, name in enumerate(strategies):
        points = [summaries[name, s] for s in sizes if (name, s) in summaries]
        if not points:
            continue
        x = [max(p.seconds, 1e-3) for p in points]
        seconds += x
        ax.plot(
            x,
            [p.mean for p in points],
            marker=MARKERS[index % len(MARKERS)],
            color=f"C{index % 10}",
            linestyle=":",
            label=name,
        )
        for point, xi in zip(points, x, strict=True):
            ax.annotate(
                size_tick(point.per_class, None),
                (xi, point.mean),
                textcoords="offset points",
                xytext=(5, 4),
                fontsize=8,
                color=f"C{index % 10}",
            )
    ax.set_xscale("log")
    if seconds:
        low, high = min(seconds), max(seconds)
        ax.set_xlim(low / 2, high * 3)  # room for the point labels on the right
    ax.set_xlabel("training wall time per fit, seconds (log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, wrap=True)
    ax.set_ylim(*_accuracy_limits(summaries))
    ax.grid(True, alpha=0.3, which="both")
    if ax.lines:
        _legend(ax, "mean over seeds;\npoint label: labels per class")
    fig.tight_layout()
    return _save(fig, path)


def _legend(ax, title: str) -> None:
    """Outside the axes, on the right: inside, it hides the points that matter most."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), title=title, borderaxespad=0)


def _accuracy_limits(summaries: dict) -> tuple[float, float]:
    values = [v for s in summaries.values() for v in s.accuracy]
    if not values:
        return 0.0, 1.0
    low = max(0.0, math.floor(min(values) * 10) / 10 - 0.05)
    return low, 1.02
