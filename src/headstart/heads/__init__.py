"""Task heads that sit on a backbone's pooled features, and the task definitions they serve."""

from .heads import Head, build_head
from .tasks import TASKS, Task, detect_task, get_task, task_choices

__all__ = ["Head", "build_head", "TASKS", "Task", "detect_task", "get_task", "task_choices"]
