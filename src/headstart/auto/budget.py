"""Time budgets: "30s", "5m", "1h30m" or seconds, and the deadline a fit works against."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from ..errors import HeadstartError

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smh])")


def parse_budget(value: str | float | int | None) -> float | None:
    """Seconds, or None for no budget. Accepts a number of seconds or text like "90s", "5m",
    "1h30m", "2.5m"."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        seconds = _parse_text(text, value)
    if seconds <= 0:
        raise HeadstartError(f"The budget must be positive; got {value!r}. Example: --budget 5m.")
    return seconds


def _parse_text(text: str, given) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    parts = PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise HeadstartError(
            f"Cannot read the budget {given!r}: give seconds or a duration such as 30s, 5m, "
            "1h or 1h30m."
        )
    return sum(float(number) * UNITS[unit] for number, unit in parts)


def format_seconds(seconds: float) -> str:
    """'45 s', '3.2 min', '1.5 h': durations as the progress lines and reasons print them."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class Deadline:
    """The end of a fit's budget on the monotonic clock; `seconds=None` never ends."""

    seconds: float | None
    started: float = 0.0

    def __post_init__(self) -> None:
        self.started = self.started or time.monotonic()

    @property
    def at(self) -> float | None:
        return None if self.seconds is None else self.started + self.seconds

    def remaining(self) -> float | None:
        return None if self.seconds is None else max(0.0, self.at - time.monotonic())

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def passed(self) -> bool:
        return self.seconds is not None and time.monotonic() >= self.at
