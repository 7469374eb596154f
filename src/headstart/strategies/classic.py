"""`tfidf`: TF-IDF of word 1-2 grams + logistic regression, no backbone: the text control.

The featuriser (headstart.featurisers.TfidfFeaturiser) is the ranking's no-transfer row too. A
run holds tfidf.json (options, terms in column order, IDF weights) and the linear model
(head.weight, head.bias, float64) in model.safetensors: the format of the runs saved before
the featurisers, which load as they are.
"""

from __future__ import annotations

from ..featurisers import TfidfFeaturiser
from ..featurisers.tfidf import OPTIONS
from .featurised import FeaturiserStrategy

VOCABULARY_FILE = "tfidf.json"
__all__ = ["OPTIONS", "TfidfLogistic", "VOCABULARY_FILE"]


class TfidfLogistic(FeaturiserStrategy):
    name = "tfidf"
    summary = "TF-IDF + logistic regression, no backbone: the control a text user should always see"
    modalities = ("text",)
    info_key = "terms"

    def new_featuriser(self) -> TfidfFeaturiser:
        return TfidfFeaturiser()

    def head_spec(self) -> dict:
        featuriser = self.featuriser
        return {**super().head_spec(), "terms": featuriser.dim, "options": featuriser.options}
