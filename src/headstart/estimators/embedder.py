"""Embedder: a frozen pre-trained backbone as a scikit-learn transformer.

Pipeline([("embed", Embedder("minilm_l6")), ("clf", LogisticRegression())]).fit(texts, y)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from ..errors import HeadstartError, check_choice
from ..modalities import MODALITIES, detect_values, get_modality
from .base import NotFittedError


class Embedder(TransformerMixin, BaseEstimator):
    """Texts or image paths -> (N, D) pooled features of a frozen backbone, through the cache.

    model: a zoo name (default: the bundled backbone of the data's modality). modality: "auto"
    (the modality the first input looks like: an existing image file is an image, any other
    string a text), or a modality's name ("image", "text").
    fit learns nothing: it resolves the backbone and records modality_, model_, weight_id_ and
    n_features_out_. An input that cannot be used is an error naming it (rows must line up).
    verbose, device, precision and workers choose how the work runs, not what it computes."""

    def __init__(
        self,
        model: str = "",
        *,
        modality: str = "auto",
        weights: str | None = None,
        precision: str = "auto",
        device: str = "auto",
        workers: int | None = None,
        verbose: bool = False,
    ):
        self.model, self.modality, self.weights = model, modality, weights
        self.precision, self.device = precision, device
        self.workers, self.verbose = workers, verbose

    def fit(self, X, y=None) -> Embedder:
        from ..zoo import load_backbone

        check_choice("modality", self.modality, ("auto", *MODALITIES), "Embedder")
        modality = self.modality if self.modality != "auto" else _guess_modality(X, self.model)
        self.backbone_ = load_backbone(self.model, modality, self.weights)
        self.modality_, self.model_ = modality, self.backbone_.name
        self.weight_id_ = self.backbone_.weight_id
        self.n_features_out_ = int(self.backbone_.feature_dim)
        return self

    def transform(self, X) -> np.ndarray:
        from ..features.extract import Extractor

        if not hasattr(self, "backbone_"):
            raise NotFittedError(
                "This Embedder is not fitted yet. Call fit(X) first (it learns nothing, but "
                "chooses the backbone)."
            )
        values = list(X) if not isinstance(X, str | Path) else [X]
        source = get_modality(self.modality_).source_from_values(values)
        extractor = Extractor(
            self.backbone_,
            precision=self.precision,
            device=self.device,
            workers=self.workers,
            cache=True,
        )
        found = extractor.run(source)
        if found.skipped:
            first = found.skipped[0]
            raise HeadstartError(
                f"{len(found.skipped)} of {len(values)} inputs cannot be embedded (first: "
                f"{first.id}: {first.reason}), so rows would not line up with the inputs. "
                "Remove them first."
            )
        return found.features

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.array([f"{self.model_}_{i}" for i in range(self.n_features_out_)], dtype=object)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.requires_fit = True
        return tags


def _guess_modality(X, model: str) -> str:
    if model:
        from ..zoo import get_entry

        return get_entry(model).modality
    return detect_values([X] if isinstance(X, str | Path) else X).name
