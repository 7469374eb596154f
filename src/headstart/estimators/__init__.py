"""scikit-learn estimators: fit(X, y) returns self; predict, score, transform, save, load."""

from .audio import AudioClassifier
from .base import NotFittedError, TransferEstimator
from .detection import ObjectDetector
from .embedder import Embedder
from .image import ImageClassifier
from .segmentation import Segmenter
from .text import TextClassifier

__all__ = [
    "AudioClassifier",
    "Embedder",
    "ImageClassifier",
    "NotFittedError",
    "ObjectDetector",
    "Segmenter",
    "TextClassifier",
    "TransferEstimator",
]
