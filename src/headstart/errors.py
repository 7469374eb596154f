"""One error shape for everything a user can get wrong.

Every message says what was wrong (which file or parameter), what was expected and how to fix it.
The command line prints a HeadstartError as one line, without a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HeadstartError(Exception):
    """An error caused by the user's input or environment, with a message meant for them."""


class UnreadableItem(Exception):
    """One input item (file or row) cannot be used; the caller skips it and reports the reason."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' Did you mean 'x'?' when a close match exists, else ''."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def check_choice(param: str, value: object, allowed: Iterable[str], owner: str = "") -> None:
    """Raise the standard error when `value` is not one of `allowed`."""
    allowed = list(allowed)
    if value in allowed:
        return
    where = f" of {owner}" if owner else ""
    raise HeadstartError(
        f"The {param!r} parameter{where} must be one of {{{', '.join(map(repr, allowed))}}}. "
        f"Got {value!r} instead.{did_you_mean(str(value), allowed)}"
    )
