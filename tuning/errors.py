"""The one exception type for user mistakes.

Anything raised as :class:`UserError` is the user's to fix (a bad flag, a bad YAML value, a missing corpus);
command-line entry points print its message on one line and exit with status 2, without a traceback.
Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
from typing import NoReturn


class UserError(ValueError):
    """A problem with the user's input, described in one line with what is allowed."""

    exit_code = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is a UserError: one line, exit status 2, like every other mistake."""

    def error(self, message: str) -> NoReturn:
        raise UserError(message)
