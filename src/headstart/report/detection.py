"""Detection figures: precision-recall at IoU 0.5 per class, and a sheet of images with the true
boxes (green) and the predicted ones (orange, with class and score)."""

from __future__ import annotations

import math
import os
from pathlib import Path

from .plots import DPI, _figure_class, _save, _shorten

TRUE_COLOUR, PREDICTED_COLOUR = "#2ca02c", "#ff7f0e"


def pr_curve_png(curves: dict, per_class: dict, path: str | os.PathLike) -> Path:
    """One precision-recall curve per class at IoU 0.5 (COCO's 101 recall points)."""
    Figure = _figure_class()
    fig = Figure(figsize=(6.4, 5.0), dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    recall = [i / 100 for i in range(101)]
    for name, precision in list(curves.items())[:20]:
        points = [(r, p) for r, p in zip(recall, precision, strict=True) if p >= 0]
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        ap = per_class.get(name, {}).get("ap50", float("nan"))
        ax.plot(xs, ys, label=f"{_shorten(name)} (AP@0.5 {ap:.3f})")
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall at IoU 0.5 (validation)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def boxes_sheet_png(items, predictions, classes, path, threshold: float = 0.3) -> Path:
    """A grid of images, true boxes in green, predictions at or above `threshold` in orange."""
    from matplotlib.patches import Rectangle

    from ..data.images import load_rgb

    Figure = _figure_class()
    columns = min(4, len(items))
    rows = math.ceil(len(items) / columns)
    fig = Figure(figsize=(3.2 * columns, 3.0 * rows + 0.4), dpi=DPI)
    for index, (item, found) in enumerate(zip(items, predictions, strict=True)):
        ax = fig.add_subplot(rows, columns, index + 1)
        ax.imshow(load_rgb(item.path))
        ax.set_axis_off()
        ax.set_title(_shorten(Path(item.path).name), fontsize=8)
        for x1, y1, x2, y2 in item.target.boxes:
            ax.add_patch(_box(Rectangle, (x1, y1, x2, y2), TRUE_COLOUR))
        for box, score, label in zip(found["boxes"], found["scores"], found["labels"], strict=True):
            if float(score) < threshold:
                continue
            x1, y1, x2, y2 = (float(v) for v in box)
            ax.add_patch(_box(Rectangle, (x1, y1, x2, y2), PREDICTED_COLOUR, dashed=True))
            ax.text(
                x1,
                y1,
                f"{_shorten(classes[int(label)])} {float(score):.2f}",
                fontsize=6,
                color="white",
                va="bottom",
                bbox={"facecolor": PREDICTED_COLOUR, "edgecolor": "none", "pad": 1},
            )
    fig.suptitle(
        f"Validation images: true boxes (green), predicted at score >= {threshold:g} (orange)",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, path)


def _box(Rectangle, corners, colour: str, dashed: bool = False):
    x1, y1, x2, y2 = corners
    style = "--" if dashed else "-"
    return Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.6, ec=colour, ls=style)
