"""The one exception type for user mistakes.

Anything raised as :class:`UserError` is the user's to fix (a bad flag, a bad YAML value, a missing corpus);
command-line entry points print its message on one line and exit with status 2, without a traceback.
Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn


class UserError(ValueError):
    """A problem with the user's input, described in one line with what is allowed."""

    exit_code = 2


QUOTE_CHARS = 80  # how much of a user's value an error message quotes


def _brief(value: Any, room: int) -> str:
    """``repr(value)``, but building no more than about ``room`` characters of it, however large the value."""
    if isinstance(value, str):
        return repr(value[:room + 1])
    if isinstance(value, (list, tuple, dict)):
        brackets = "{}" if isinstance(value, dict) else "()" if isinstance(value, tuple) else "[]"
        parts: list[str] = []
        used = 1
        for item in (value.items() if isinstance(value, dict) else value):
            if used > room:
                parts.append("…")
                break
            if isinstance(value, dict):
                key = _brief(item[0], room - used)
                piece = f"{key}: {_brief(item[1], room - used - len(key) - 2)}"
            else:
                piece = _brief(item, room - used)
            parts.append(piece)
            used += len(piece) + 2
        tail = "," if isinstance(value, tuple) and len(value) == 1 else ""
        return brackets[0] + ", ".join(parts) + tail + brackets[1]
    return repr(value)[:room + 1]


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """A user's value as an error message shows it: its repr, cut to ``limit`` characters with '…'.

    Messages are one line for a terminal, and a small YAML file can hold a value too large to print.
    """
    text = _brief(value, limit)
    return text if len(text) <= limit else text[:limit - 1] + "…"


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is a UserError: one line, exit status 2, like every other mistake."""

    def error(self, message: str) -> NoReturn:
        raise UserError(message)
