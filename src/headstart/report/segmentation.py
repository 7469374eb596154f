"""Segmentation figures: a mask laid over its image (one colour per class, class 0 left clear),
and a sheet of validation images with the true and the predicted masks side by side."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .plots import DPI, _figure_class, _save, _shorten

ALPHA = 0.45  # how strongly a class colour covers the image


def _colours(count: int) -> np.ndarray:
    """RGB in [0, 1] per class; class 0 (background) is never drawn."""
    from matplotlib import colormaps

    table = colormaps["tab10"] if count <= 11 else colormaps["tab20"]
    return np.array([table(k % table.N)[:3] for k in range(max(count - 1, 1))])


def blend(image: np.ndarray, mask: np.ndarray, classes: list[str]) -> np.ndarray:
    """RGB float (H, W, 3): the image in grey or colour, each class > 0 tinted."""
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    out = rgb.astype(np.float32).copy()
    colours = _colours(len(classes))
    for k in range(1, len(classes)):
        where = mask == k
        out[where] = (1 - ALPHA) * out[where] + ALPHA * colours[k - 1]
    return out.clip(0, 1)


def overlay_png(image: np.ndarray, mask: np.ndarray, classes: list[str], path) -> Path:
    """The image with its predicted mask laid over it, and a legend of the class colours."""
    from matplotlib.patches import Patch

    Figure = _figure_class()
    h, w = mask.shape
    fig = Figure(figsize=(6.0, 6.0 * h / max(w, 1) + 0.5), dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(blend(image, mask, classes))
    ax.set_axis_off()
    colours = _colours(len(classes))
    handles = [
        Patch(color=colours[k - 1], label=_shorten(classes[k])) for k in range(1, len(classes))
    ]
    ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.8)
    fig.tight_layout()
    return _save(fig, path)


def masks_sheet_png(
    images: list[np.ndarray], truth, predicted, classes: list[str], names, path: str | os.PathLike
) -> Path:
    """One row per image: the image, the true mask over it, the predicted mask over it."""
    Figure = _figure_class()
    rows = len(images)
    fig = Figure(figsize=(9.0, 3.0 * rows + 0.3), dpi=DPI)
    for row, (image, true, guess, name) in enumerate(
        zip(images, truth, predicted, names, strict=True)
    ):
        panels = (("image", image[..., :3] if image.shape[-1] == 3 else image[..., 0]),)
        panels += (("true", blend(image, true, classes)),)
        panels += (("predicted", blend(image, guess, classes)),)
        for column, (title, shown) in enumerate(panels):
            ax = fig.add_subplot(rows, 3, row * 3 + column + 1)
            ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
            ax.set_axis_off()
            ax.set_title(f"{_shorten(name)}: {title}" if column == 0 else title, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
