"""A featuriser whose rows are raw values (pixels, MFCC statistics) standardised per column.

Subclasses give `raw(items)` (unreadable input raises HeadstartError), `dim`, their settings
(`settings()` and `from_settings`); this class fits the shift and scale, applies them, saves them
and gives `rank` its no-transfer rows.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..errors import HeadstartError
from .base import Featuriser


class StandardisedFeaturiser(Featuriser):
    min_scale: ClassVar[float] = 1e-6  # a constant column carries nothing: it is left at 0
    noun: ClassVar[str] = "inputs"  # what it reads, for messages

    def __init__(self, standardise: bool = True, shift=None, scale=None):
        self.standardise = bool(standardise)
        self.shift = None if shift is None else np.asarray(shift, np.float64)
        self.scale = None if scale is None else np.asarray(scale, np.float64)

    def raw(self, items) -> np.ndarray:
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_settings(cls, config: dict, standardise: bool, shift, scale):
        raise NotImplementedError

    @classmethod
    def control_rows(cls, items) -> tuple[np.ndarray, list]:
        """Raw rows (not standardised: the scores standardise where they need to); an item that
        cannot be read is left out, as the backbones skip it too."""
        featuriser = cls(standardise=False)
        kept, rows = [], []
        for item in items:
            try:
                rows.append(featuriser.raw([item])[0])
                kept.append(item)
            except HeadstartError:
                continue
        return np.stack(rows) if rows else np.zeros((0, featuriser.dim)), kept

    def fit(self, items):
        if self.standardise:
            x = self.raw(items)
            self.shift = x.mean(axis=0)
            scale = x.std(axis=0)
            scale[scale < self.min_scale] = 1.0
            self.scale = scale
        return self

    def transform(self, items) -> np.ndarray:
        x = self.raw(items)
        if not self.standardise:
            return x
        if self.shift is None:
            raise HeadstartError(
                f"This {self.name} featuriser is not fitted: call fit({self.noun}) first."
            )
        return (x - self.shift) / self.scale

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        config = {**self.settings(), "standardise": self.standardise}
        arrays = {} if not self.standardise else {"shift": self.shift, "scale": self.scale}
        return config, arrays

    @classmethod
    def from_state(cls, config: dict, arrays: dict[str, np.ndarray]):
        try:
            standardise = bool(config.get("standardise", True))
            shift, scale = (arrays["shift"], arrays["scale"]) if standardise else (None, None)
            found = cls.from_settings(config, standardise, shift, scale)
        except (KeyError, TypeError, ValueError) as err:
            raise HeadstartError(
                f"The saved {cls.name} featuriser is incomplete ({err}). Re-run fit."
            ) from None
        if standardise and not len(found.shift) == len(found.scale) == found.dim:
            raise HeadstartError(
                f"The saved {cls.name} standardisation ({len(found.shift)} values) does not "
                f"match {found.about}. Re-run fit."
            )
        return found
