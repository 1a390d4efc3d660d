"""The one exception type users see: the CLI prints its message as a single line, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: the message names the value, what is allowed, and the fix."""

    exit_code = 1


class UsageError(UserError):
    """A bad command-line value or option combination (exit status 2, as argparse uses)."""

    exit_code = 2


class DataError(UserError):
    """Missing, partial-beyond-use, truncated, corrupt or foreign CIFAR-10 files."""


class Interrupted(UserError):
    """Training stopped by SIGINT or SIGTERM after writing a resumable checkpoint."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class NonFiniteLoss(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
