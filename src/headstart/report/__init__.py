"""Evaluation metrics, figures and the Markdown report of a run."""

from .markdown import worst_examples, write_report
from .metrics import best_thresholds, compute_metrics
from .plots import confusion_matrix_png, curves_png

__all__ = [
    "best_thresholds",
    "compute_metrics",
    "confusion_matrix_png",
    "curves_png",
    "worst_examples",
    "write_report",
]
