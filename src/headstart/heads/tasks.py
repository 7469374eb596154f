"""Tasks moved to `headstart.tasks` (one class per task, in a registry); re-exported here."""

from ..tasks import MULTILABEL_SEP, TASKS, Task, detect_task, get_task, task_choices

__all__ = ["MULTILABEL_SEP", "TASKS", "Task", "detect_task", "get_task", "task_choices"]
