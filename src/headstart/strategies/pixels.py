"""`pixels`: raw pixels scaled small + a linear model, no backbone: the no-transfer image control.

It is to images what `tfidf` is to texts: the featuriser (headstart.featurisers.PixelsFeaturiser,
standardised per pixel) and a logistic regression (C by cross-validation, as the linear probe
does). Where this beats pre-trained features, the data is far from what the backbones saw
(strong domain shift): transfer does not pay there.
"""

from __future__ import annotations

from typing import ClassVar

from ..featurisers import DEFAULT_SIDE, PixelsFeaturiser
from .featurised import FeaturiserStrategy


class PixelsLogistic(FeaturiserStrategy):
    name = "pixels"
    summary = (
        "raw pixels scaled to 16x16 + logistic regression, no backbone: the control that says "
        "whether transfer pays on these images"
    )
    modalities = ("image",)
    options: ClassVar[dict[str, type]] = {"side": int, "grey": bool}
    aliases: ClassVar[dict[str, str]] = {"size": "side", "gray": "grey"}
    example = "pixels:side=32,grey=true"

    def __init__(self, lr=None, lr_decay=None, side: int = DEFAULT_SIDE, grey: bool = False):
        self.side, self.grey = side, grey
        super().__init__(lr, lr_decay)  # makes the featuriser, which checks the side

    def new_featuriser(self) -> PixelsFeaturiser:
        return PixelsFeaturiser(self.side, self.grey, standardise=True)

    def describe(self) -> dict:
        side, grey = self.featuriser.side, self.featuriser.grey
        return {**super().describe(), "side": side, "grey": grey}

    def head_spec(self) -> dict:
        featuriser = self.featuriser
        return {**super().head_spec(), "side": featuriser.side, "grey": featuriser.grey}

    def legacy_state(self, head_spec: dict, head_state: dict) -> tuple[dict, dict]:
        """Runs saved before the featurisers: side and grey in the head spec, the
        standardisation among the head's tensors."""
        config = {"side": head_spec.get("side"), "grey": head_spec.get("grey")}
        arrays = {k: head_state[k].double().numpy() for k in ("shift", "scale") if k in head_state}
        return config, arrays
