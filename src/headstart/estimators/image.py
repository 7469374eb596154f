"""ImageClassifier: a pre-trained image backbone with a new head for the user's labels."""

from __future__ import annotations

from .base import TransferEstimator


class ImageClassifier(TransferEstimator):
    """Image classification, multi-label or regression by transfer from a pre-trained backbone.

    >>> clf = ImageClassifier("efficientnet_lite0", strategy="linear-probe").fit("train/")
    >>> clf.evaluate("val/")["accuracy"]
    """

    modality = "image"
