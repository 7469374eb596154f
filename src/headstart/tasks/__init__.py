"""Tasks as objects in a registry: what a target is, what the backbone must give, the head, the
loss, decoding, and one torchmetrics collection shared by the engine and the report."""

from .base import (
    MULTILABEL_SEP,
    TASKS,
    Task,
    detect_task,
    get_task,
    own_estimator_task,
    pooled_tasks,
    register_task,
    task_choices,
)
from .classification import Classification
from .detection import Detection
from .multilabel import MultiLabel
from .regression import Regression
from .segmentation import Segmentation

__all__ = [
    "MULTILABEL_SEP",
    "TASKS",
    "Classification",
    "Detection",
    "MultiLabel",
    "Regression",
    "Segmentation",
    "Task",
    "detect_task",
    "get_task",
    "own_estimator_task",
    "pooled_tasks",
    "register_task",
    "task_choices",
]
