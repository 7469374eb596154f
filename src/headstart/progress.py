"""Progress where no terminal is attached: a line at a steady interval (log files, CI, notebooks).

On a terminal the rich bars say where long work is; elsewhere they draw nothing, and a fit of
half an hour printed nothing at all. `Heartbeat` prints what is being done, how far, the time
spent and the time left, at most every HEADSTART_PROGRESS_EVERY seconds (default 30).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

from .auto.budget import format_seconds

DEFAULT_EVERY = 30.0


def interval() -> float:
    try:
        return max(0.0, float(os.environ.get("HEADSTART_PROGRESS_EVERY", DEFAULT_EVERY)))
    except ValueError:
        return DEFAULT_EVERY


def wants_lines(show: bool = True) -> bool:
    """True where progress should be lines: asked for, stderr not a terminal, not switched off."""
    return show and not sys.stderr.isatty() and not os.environ.get("HEADSTART_NO_PROGRESS")


class Heartbeat:
    """update(done, total) as often as you like; a line goes out at most every `every` seconds
    (and once at the end): "training: 120/400 steps, 2.0 min spent, about 4.7 min left"."""

    def __init__(
        self,
        what: str,
        unit: str = "steps",
        every: float | None = None,
        write: Callable[[str], None] | None = None,
    ):
        self.what, self.unit = what, unit
        self.every = interval() if every is None else every
        self.write = write or (lambda line: print(line, file=sys.stderr, flush=True))
        self.started = time.monotonic()
        self.last = self.started
        self.done_said = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        finished = total and done >= total
        if finished and self.done_said:
            return
        if not finished and now - self.last < self.every:
            return
        self.last = now
        self.done_said = bool(finished)
        spent = now - self.started
        line = f"{self.what}: {done}/{total} {self.unit}, {format_seconds(spent)} spent"
        if done and total and not finished:
            line += f", about {format_seconds(spent / done * (total - done))} left"
        self.write(line)


def line_progress(what: str, unit: str = "steps", show: bool = True):
    """A Heartbeat where lines are wanted (see wants_lines), else None."""
    return Heartbeat(what, unit) if wants_lines(show) else None
