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
from .base import Featuriser

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


class PixelsFeaturiser(Featuriser):
    name: ClassVar[str] = "pixels"
    modality: ClassVar[str] = "image"

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
        self.side, self.grey, self.standardise = int(side), bool(grey), bool(standardise)
        self.shift = None if shift is None else np.asarray(shift, np.float64)
        self.scale = None if scale is None else np.asarray(scale, np.float64)

    @property
    def about(self) -> str:
        return f"raw pixels {self.side}x{self.side} {'grey' if self.grey else 'RGB'}"

    @property
    def dim(self) -> int:
        return self.side * self.side * (1 if self.grey else 3)

    def raw(self, items) -> np.ndarray:
        """Pixels in [0, 1], not standardised."""
        return pixel_matrix([path_of(i) for i in items], self.side, self.grey)

    @classmethod
    def control_rows(cls, items) -> tuple[np.ndarray, list]:
        """Raw pixels (not standardised: the scores standardise where they need to); an
        unreadable image is left out, as the backbones skip it too."""
        pixels = cls(standardise=False)
        kept, rows = [], []
        for item in items:
            try:
                rows.append(pixels.transform([item])[0])
                kept.append(item)
            except HeadstartError:
                continue
        return np.stack(rows) if rows else np.zeros((0, pixels.dim)), kept

    def fit(self, items) -> PixelsFeaturiser:
        if self.standardise:
            x = self.raw(items)
            self.shift = x.mean(axis=0)
            scale = x.std(axis=0)
            scale[scale < 1e-6] = 1.0  # a constant pixel (a border) carries nothing; leave it 0
            self.scale = scale
        return self

    def transform(self, items) -> np.ndarray:
        x = self.raw(items)
        if not self.standardise:
            return x
        if self.shift is None:
            raise HeadstartError("This pixels featuriser is not fitted: call fit(images) first.")
        return (x - self.shift) / self.scale

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        config = {"side": self.side, "grey": self.grey, "standardise": self.standardise}
        arrays = {} if not self.standardise else {"shift": self.shift, "scale": self.scale}
        return config, arrays

    @classmethod
    def from_state(cls, config: dict, arrays: dict[str, np.ndarray]) -> PixelsFeaturiser:
        try:
            side, grey = int(config["side"]), bool(config["grey"])
            standardise = bool(config.get("standardise", True))
            shift, scale = (arrays["shift"], arrays["scale"]) if standardise else (None, None)
        except (KeyError, TypeError, ValueError) as err:
            raise HeadstartError(
                f"The saved pixels featuriser is incomplete ({err}). Re-run fit."
            ) from None
        found = cls(side, grey, standardise, shift, scale)
        if standardise and not len(found.shift) == len(found.scale) == found.dim:
            raise HeadstartError(
                f"The saved pixel standardisation ({len(found.shift)} values) does not match "
                f"{side}x{side} {'grey' if grey else 'RGB'} inputs. Re-run fit."
            )
        return found
