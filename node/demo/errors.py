"""The one error the demo raises."""

from __future__ import annotations


class DemoError(Exception):
    """The demo cannot run or failed; the message is one line for the user, `code` the exit code
    (4: the homes cannot be made, 1: a daemon failed)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code
