"""scikit-learn-shaped estimators: fit returns self; predict, evaluate, save, load."""

from .base import TransferEstimator
from .image import ImageClassifier
from .text import TextClassifier

__all__ = ["TransferEstimator", "ImageClassifier", "TextClassifier"]
