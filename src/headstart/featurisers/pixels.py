"""Raw pixels at side x side: the no-transfer featuriser for images.

Every image is decoded, its shorter side resized to `side` and centre-cropped to side x side
(bicubic, antialiased when shrinking), optionally turned grey and scaled to [0, 1]. With
standardise=True (the `pixels` strategy) fit learns a per-pixel shift and scale and transform
applies them; with standardise=False (the ranking's no-transfer row) the rows are the raw values.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import HeadstartError, UnreadableItem
from .standardised import StandardisedFeaturiser

DEFAULT_SIDE = 16


def pixel_matrix(paths: Sequence, side: int = DEFAULT_SIDE, grey: bool = False) -> np.ndarray:
    """(N, side * side * channels) float64 pixels in [0, 1]; an unreadable file is an error."""
    from ..data.images import load_rgb, to_model_tensor
    from ..zoo.config import ImagePreprocess

    pre = ImagePreprocess(input_size=side, crop_pct=1.0, interpolation="bicubic")
    rows = []
    for path in paths:
        try:
            img = load_rgb(path, draft_to=side)
        except UnreadableItem as err:
            raise HeadstartError(
                f"'{path}' cannot be used by the pixels featuriser: {err}. Remove or fix the file."
            ) from None
        if grey:
            img = img.convert("L").convert("RGB")
        array = to_model_tensor(img, pre).numpy()
        rows.append((array[:1] if grey else array).reshape(-1))
    if not rows:
        return np.zeros((0, side * side * (1 if grey else 3)))
    return np.stack(rows).astype(np.float64) / 255.0


def path_of(item) -> Path:
    """An Item's path, or a path given as it is."""
    path = getattr(item, "path", item)
    if path is None:
        raise HeadstartError("The pixels featuriser reads image files; this item has no path.")
    return Path(path)


class PixelsFeaturiser(StandardisedFeaturiser):
    name: ClassVar[str] = "pixels"
    modality: ClassVar[str] = "image"
    noun: ClassVar[str] = "images"

    def __init__(
        self,
        side: int = DEFAULT_SIDE,
        grey: bool = False,
        standardise: bool = True,
        shift=None,
        scale=None,
    ):
        if not 4 <= int(side) <= 128:
            raise HeadstartError(f"pixels: side must be between 4 and 128; got {side}.")
        self.side, self.grey = int(side), bool(grey)
        super().__init__(standardise, shift, scale)

    @property
    def about(self) -> str:
        return f"raw pixels {self.side}x{self.side} {'grey' if self.grey else 'RGB'}"

    @property
    def dim(self) -> int:
        return self.side * self.side * (1 if self.grey else 3)

    def raw(self, items) -> np.ndarray:
        """Pixels in [0, 1], not standardised."""
        return pixel_matrix([path_of(i) for i in items], self.side, self.grey)

    def settings(self) -> dict[str, Any]:
        return {"side": self.side, "grey": self.grey}

    @classmethod
    def from_settings(cls, config: dict, standardise: bool, shift, scale) -> PixelsFeaturiser:
        return cls(int(config["side"]), bool(config["grey"]), standardise, shift, scale)
