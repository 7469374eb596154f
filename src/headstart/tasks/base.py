"""The task interface and its registry: what a target is, what the backbone gives, the head,
the loss, how outputs decode to predictions, and the metrics the engine and the report share."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..errors import HeadstartError, check_choice

if TYPE_CHECKING:
    from torchmetrics import MetricCollection

    from ..heads.heads import Head

TASKS: dict[str, type[Task]] = {}  # the registry: name -> task class, in registration order
MULTILABEL_SEP = "|"


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make a task available by its `name` (fit(task=...), --task, runs)."""
    TASKS[cls.name] = cls
    return cls


def task_choices() -> tuple[str, ...]:
    """What a `task` parameter accepts: 'auto' and every registered task name."""
    return ("auto", *TASKS)


def pooled_tasks() -> tuple[str, ...]:
    """The tasks a classifier estimator trains: one pooled vector per item in, a head on it."""
    return tuple(name for name, cls in TASKS.items() if not cls.estimator)


def own_estimator_task(task: str, data) -> type[Task] | None:
    """The task class with its own estimator (detection) that `task` names or, when 'auto', whose
    layout DATA has; None: a pooled task, for the modality's estimator."""
    if task != "auto":
        cls = TASKS.get(task)
        return cls if cls is not None and cls.estimator else None
    return next((c for c in TASKS.values() if c.estimator and c.recognises(data)), None)


def get_task(name: str, classes: Sequence[str] = ()) -> Task:
    """The task called `name` over `classes` (what a saved run rebuilds)."""
    check_choice("task", name, TASKS)
    return TASKS[name](classes)


def detect_task(labels: list[str]) -> str:
    """multilabel when labels are joined by '|', regression when they are non-integer numbers
    (or integers with many distinct values), otherwise classification."""
    if any(MULTILABEL_SEP in label for label in labels):
        return "multilabel"
    numbers = [number(label) for label in labels]
    if all(n is not None for n in numbers):
        integral = all(float(n).is_integer() for n in numbers)
        if not integral or len(set(numbers)) > 20:
            return "regression"
    return "classification"


class Task:
    """One kind of prediction. Subclasses set the class attributes and the methods below."""

    name: ClassVar[str] = ""
    needs: ClassVar[str] = "pooled"  # what the backbone must give: pooled | tokens | pyramid
    target_type: ClassVar[type | tuple[type, ...]] = object  # a parsed target's type
    stratify: ClassVar[bool] = False  # whether a random split keeps class proportions
    # collection metric -> history key of the engine's validation (besides val_loss)
    history: ClassVar[dict[str, str]] = {}
    # one class name per item: what label ranking (LogME), compare's accuracy grid and `auto`'s
    # choice of a trained backbone assume
    one_class_per_item: ClassVar[bool] = False
    # the metrics a report shows first: (metrics.json key, display name)
    headline_metrics: ClassVar[tuple[tuple[str, str], ...]] = ()
    worst_by: ClassVar[str] = "largest absolute error"  # how worst_examples orders examples
    # the estimator class (estimators/) that trains this task when it is not the modality's
    # classifier: tasks whose model is more than a head on a pooled vector (detection,
    # segmentation)
    estimator: ClassVar[str] = ""

    @classmethod
    def recognises(cls, path) -> bool:
        """Whether DATA's layout names this task (detection sets do); pooled tasks: never."""
        return False

    @classmethod
    def ranking_crops(cls, path, folder, seed: int, max_items: int):
        """For tasks with their own estimator: DATA as a classification Source of crops written
        under `folder`, that `rank` scores backbones on."""
        raise NotImplementedError

    def __init__(self, classes: Iterable[str] = ()):
        self.classes: list[str] = list(classes)  # class or label names; empty for regression

    @property
    def kind(self) -> str:
        return self.name

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.classes == self.classes

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.classes!r})"

    def spec(self) -> dict:
        return {"kind": self.name, "classes": list(self.classes)}

    # -- from labels

    @classmethod
    def from_labels(cls, labels: list[str], kind: str = "auto") -> Task:
        """The task for these raw training labels: `kind` by name ('auto' detects it), or the
        class this is called on (Regression.from_labels(labels))."""
        if cls is Task:
            check_choice("task", kind, task_choices())
            cls = TASKS[detect_task(labels) if kind == "auto" else kind]
        return cls._from_labels(list(labels))

    @classmethod
    def _from_labels(cls, labels: list[str]) -> Task:
        raise NotImplementedError

    # -- targets

    def parse(self, label: str) -> Any:
        """The typed target of one raw label as read from disk."""
        raise NotImplementedError

    def targets(self, items_or_labels: Sequence) -> np.ndarray:
        """What the loss takes, for Items (their `target`, else their label) or raw labels."""
        return self._array([self._target_of(x) for x in items_or_labels])

    def _array(self, targets: list) -> np.ndarray:
        raise NotImplementedError

    def _target_of(self, item_or_label) -> Any:
        target = getattr(item_or_label, "target", None)
        if isinstance(target, self.target_type):
            return target
        label = getattr(item_or_label, "label", item_or_label)
        return self.parse(label)

    def with_targets(self, items: Sequence) -> list:
        """Copies of `items` carrying their typed `target`; labels this task cannot take (unseen
        classes, text for regression) fail here, all at once where the task can say so."""
        self.targets(items)
        return [dataclasses.replace(i, target=self._target_of(i)) for i in items]

    def attach(self, source):
        """A copy of a Source whose items carry their typed target (see `with_targets`)."""
        return dataclasses.replace(source, items=self.with_targets(source.items))

    # -- the model

    @property
    def out_dim(self) -> int:
        return len(self.classes)

    def build_head(self, in_dim: int, hidden: int = 0, dropout: float = 0.0) -> Head:
        from ..heads.heads import Head  # heads/ re-exports this package: import when used

        return Head(in_dim, self.out_dim, hidden, dropout)

    def loss(self, label_smoothing: float = 0.0) -> nn.Module:
        raise NotImplementedError

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, outputs: np.ndarray, thresholds: np.ndarray | None = None) -> list:
        """Predictions from `probabilities` outputs, as predict() returns them."""
        raise NotImplementedError

    def score(self, truth: Sequence, predicted: Sequence, sample_weight=None) -> float:
        """The estimator's `score`: scikit-learn's default for this kind of prediction, with
        `truth` as the user gave y and `predicted` as predict() returned."""
        raise NotImplementedError

    # -- metrics

    def metrics(self, thresholds: np.ndarray | None = None) -> MetricCollection:
        """A fresh collection; update(outputs, targets) takes `probabilities` and `targets`."""
        raise NotImplementedError

    def check_outputs(self, targets: np.ndarray, outputs: np.ndarray) -> tuple:
        """(targets, outputs) shaped for `metrics`, or a HeadstartError saying what is wrong."""
        return targets, outputs

    def summarise(self, values: dict, thresholds: np.ndarray | None = None) -> dict:
        """The collection's values as the JSON-serialisable dict metrics.json holds."""
        raise NotImplementedError

    def headline(self, outputs: torch.Tensor, targets: np.ndarray) -> dict[str, float]:
        """The metrics a training history reports (val_accuracy, val_f1, val_mae), at once."""
        every = self.metrics()
        values = {}
        for key, name in self.history.items():
            every[key].update(outputs, torch.as_tensor(targets))
            values[name] = float(every[key].compute())
        return values

    def tune_thresholds(self, targets: np.ndarray, outputs: np.ndarray) -> np.ndarray | None:
        """Decision thresholds fitted on validation data, for tasks that have them."""
        return None

    # -- what predictions and reports show

    def describe_prediction(self, output: np.ndarray, top_k: int | None = None) -> dict:
        """Fields a prediction record carries besides its label, for one row of outputs
        (classification: the probability, and the top_k classes when asked)."""
        return {}

    def worst_examples(
        self, ids: list, targets: np.ndarray, outputs: np.ndarray, k: int, thresholds=None
    ) -> list[dict]:
        """The k worst-predicted examples, worst first (see report.markdown.worst_examples)."""
        raise NotImplementedError

    def detail_tables(self, metrics: dict, max_classes: int) -> list[tuple]:
        """(heading, note, header, rows) per table a report shows below the headline metrics
        (per class, per label); matrices only up to max_classes classes."""
        return []


def number(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def natural(text: str):
    value = number(text)
    return (0, value, "") if value is not None else (1, 0.0, text)


def needs_two_classes(classes: list[str]) -> None:
    if len(classes) < 2:
        only = classes[0] if classes else "none"
        raise HeadstartError(
            f"Training needs at least two classes; the data has one ({only!r}). "
            "Add examples of another class (another subfolder or label value)."
        )


def scalar(value: torch.Tensor) -> float:
    return float(value.detach().cpu())


def floats(value: torch.Tensor) -> list[float]:
    return [float(v) for v in value.detach().cpu().reshape(-1)]
