"""PNG figures for reports: a confusion matrix and training curves.

Figures are drawn off-screen (Agg) through matplotlib's object API, so no window ever opens and
pyplot's global state is not touched. Files are written atomically: a temporary file in the same
folder, then os.replace.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

MAX_LABEL_CHARS = 28
DPI = 110


def confusion_matrix_png(
    cm: Sequence[Sequence[int]],
    classes: Sequence[str],
    path: str | os.PathLike,
    title: str = "Confusion matrix",
) -> Path:
    """Counts in each cell; rows are true classes, columns predicted. Readable for 2..30 classes."""
    import numpy as np

    Figure = _figure_class()
    matrix = np.asarray(cm, dtype=np.int64)
    n = len(classes)
    if matrix.shape != (n, n):
        raise ValueError(f"confusion matrix must be {n} x {n} for {n} classes; got {matrix.shape}")
    names = [_shorten(str(c)) for c in classes]
    longest = max((len(x) for x in names), default=1)

    cell = 0.75 if n <= 6 else 0.5 if n <= 15 else 0.36  # inches per cell
    label_font = 11 if n <= 8 else 9 if n <= 15 else 7
    count_font = 12 if n <= 6 else 9 if n <= 12 else 7 if n <= 20 else 5.5
    label_space = 0.5 + 0.075 * label_font * longest / 10 * 1.2  # inches for tick labels
    side = max(3.0, cell * n)
    fig = Figure(figsize=(side + label_space + 1.8, side + label_space * 0.75 + 1.2), dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)

    peak = int(matrix.max()) if matrix.size else 0
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(peak, 1), interpolation="nearest")
    colorbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    colorbar.ax.tick_params(labelsize=max(label_font - 1, 6))
    colorbar.set_label("examples", fontsize=label_font)

    show_zeros = n <= 15  # in big matrices, blank cells read as zero and keep the eye on errors
    for i in range(n):
        for j in range(n):
            value = int(matrix[i, j])
            if not value and not show_zeros:
                continue
            dark = value > peak / 2 if peak else False
            ax.text(
                j,
                i,
                str(value),
                ha="center",
                va="center",
                fontsize=count_font,
                color="white" if dark else ("black" if value else "#9a9a9a"),
            )

    ticks = list(range(n))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    rotate = n > 4 or longest > 6
    ax.set_xticklabels(
        names,
        fontsize=label_font,
        rotation=45 if rotate else 0,
        ha="right" if rotate else "center",
        rotation_mode="anchor",
    )
    ax.set_yticklabels(names, fontsize=label_font)
    ax.set_xlabel("predicted", fontsize=label_font + 1)
    ax.set_ylabel("true", fontsize=label_font + 1)
    ax.set_title(title, fontsize=label_font + 3, pad=10, wrap=True)
    # Thin white grid between cells.
    ax.set_xticks([x - 0.5 for x in range(1, n)], minor=True)
    ax.set_yticks([y - 0.5 for y in range(1, n)], minor=True)
    ax.grid(which="minor", color="white", linewidth=1)
    ax.tick_params(which="minor", length=0)
    fig.tight_layout()
    return _save(fig, path)


# Right-hand panel: the first of these present in the history, with its train_ twin when logged.
_QUALITY_KEYS = (
    ("val_accuracy", "accuracy"),
    ("val_macro_f1", "macro F1"),
    ("val_micro_f1", "micro F1"),
    ("val_mAP", "mAP"),
    ("val_map50", "mAP@0.5"),
    ("val_dice", "Dice"),
    ("val_mae", "MAE"),
    ("val_rmse", "RMSE"),
    ("val_mse", "MSE"),
)


def curves_png(
    history: Sequence[dict],
    path: str | os.PathLike,
    title: str = "Training curves",
) -> Path:
    """Two panels against epoch: loss (train_loss, val_loss) and validation quality
    (val_accuracy, or val_mae for regression, with train_ twins when present)."""
    Figure = _figure_class()
    rows = list(history)
    epochs = [_epoch(row, i) for i, row in enumerate(rows)]

    fig = Figure(figsize=(11, 4.4), dpi=DPI)
    loss_ax = fig.add_subplot(1, 2, 1)
    quality_ax = fig.add_subplot(1, 2, 2)

    drawn = _plot_series(loss_ax, rows, epochs, [("train_loss", "train"), ("val_loss", "val")])
    _finish_axes(loss_ax, "Loss", "loss", drawn, epochs)

    key, name = next(
        ((k, v) for k, v in _QUALITY_KEYS if any(_number(r.get(k)) is not None for r in rows)),
        ("val_accuracy", "accuracy"),
    )
    series = [("train_" + key[4:], "train"), (key, "val")]
    drawn = _plot_series(quality_ax, rows, epochs, series)
    _finish_axes(quality_ax, f"Validation {name}", name, drawn, epochs)

    fig.suptitle(title, fontsize=14, wrap=True)
    fig.tight_layout()
    return _save(fig, path)


def _plot_series(ax, rows, epochs, series) -> int:
    drawn = 0
    for (key, label), color in zip(series, ("C0", "C1"), strict=True):
        points = [(e, _number(r.get(key))) for e, r in zip(epochs, rows, strict=True)]
        points = [(e, v) for e, v in points if v is not None]
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        ax.plot(
            xs, ys, marker="o" if len(rows) <= 40 else None, markersize=4, label=label, color=color
        )
        drawn += 1
    return drawn


def _finish_axes(ax, title: str, ylabel: str, drawn: int, epochs: list[float]) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(loc="best")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if max(epochs) - min(epochs) < 4:  # a few epochs: keep whole-epoch ticks, some margin
            ax.set_xticks(range(math.floor(min(epochs)), math.ceil(max(epochs)) + 1))
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
    else:
        ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])


def _figure_class():
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        # Nothing interactive is in use: make sure any later pyplot use stays off-screen too.
        matplotlib.use("Agg")
    from matplotlib.figure import Figure  # drawn with Agg on savefig; never opens a window

    return Figure


def _save(fig, path: str | os.PathLike) -> Path:
    from ..files import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def _shorten(name: str) -> str:
    return name if len(name) <= MAX_LABEL_CHARS else name[: MAX_LABEL_CHARS - 1] + "…"


def _epoch(row: dict, index: int) -> float:
    epoch = _number(row.get("epoch"))
    return index + 1 if epoch is None else epoch


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
