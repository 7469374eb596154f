"""`mfcc`: MFCC statistics + a linear model, no backbone: the no-transfer audio control.

It is to audio what `pixels` is to images and `tfidf` to texts: the featuriser
(headstart.featurisers.MFCCFeaturiser, standardised per column) and a logistic regression (C by
cross-validation, as the linear probe does). Where it beats a pre-trained encoder, the sounds
are far from what the encoder heard: transfer does not pay there.
"""

from __future__ import annotations

from typing import ClassVar

from ..featurisers.mfcc import DEFAULT_COEFFICIENTS, MFCCFeaturiser
from .featurised import FeaturiserStrategy


class MFCCLogistic(FeaturiserStrategy):
    name = "mfcc"
    summary = (
        "MFCC statistics + logistic regression, no backbone: the control that says whether "
        "transfer pays on these clips"
    )
    modalities = ("audio",)
    options: ClassVar[dict[str, type]] = {"coefficients": int}
    aliases: ClassVar[dict[str, str]] = {"n_mfcc": "coefficients"}
    example = "mfcc:coefficients=13"

    def __init__(self, lr=None, lr_decay=None, coefficients: int = DEFAULT_COEFFICIENTS):
        self.coefficients = coefficients
        super().__init__(lr, lr_decay)

    def new_featuriser(self) -> MFCCFeaturiser:
        return MFCCFeaturiser(self.coefficients, standardise=True)

    def describe(self) -> dict:
        return {**super().describe(), "coefficients": self.featuriser.coefficients}

    def head_spec(self) -> dict:
        return {**super().head_spec(), "coefficients": self.featuriser.coefficients}
