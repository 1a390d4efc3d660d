"""The errors users see: the CLI prints each as a single line, no traceback, and exits non-zero.

`UserError` and its kinds carry a message that names the value, what is allowed and the fix.
`file_error` is the one path by which an operating-system error (no space, read-only, permission,
missing folder, a file where a folder should be) becomes such a line.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


class UserError(Exception):
    """A problem the user can fix: the message names the value, what is allowed, and the fix."""

    exit_code = 1


class UsageError(UserError):
    """A bad command-line value or option combination (exit status 2, as argparse uses)."""

    exit_code = 2


class DataError(UserError):
    """Missing, partial-beyond-use, truncated, corrupt or foreign CIFAR-10 files."""


class FileError(UserError):
    """The operating system refused a read or write; what was there before is intact."""


class Interrupted(UserError):
    """Training stopped by SIGINT or SIGTERM after writing a resumable checkpoint."""

    def __init__(self, message: str, exit_code: int, resume_dir: Path | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.resume_dir = resume_dir  # the CLI prints the command that resumes it


class NonFiniteLoss(UserError):
    """The loss or the weights became NaN or infinite; the last good checkpoint is kept."""


# What to do about each kind of refusal; the default covers the rest.
_FIXES = {
    errno.ENOSPC: "free some space on that disk or write somewhere else",
    errno.EDQUOT: "free some space within your quota or write somewhere else",
    errno.EROFS: "that file system is read-only: write somewhere else",
    errno.EACCES: "you lack permission there: fix the permissions or write somewhere else",
    errno.EPERM: "you lack permission there: fix the permissions or write somewhere else",
    errno.ENOENT: "check the path: a folder in it does not exist",
    errno.ENOTDIR: "a file stands where the path needs a folder: check the path",
    errno.EISDIR: "a folder stands where the path needs a file: check the path",
    errno.EEXIST: "something already stands at that path: move it or choose another path",
}


def file_error(exc: OSError, doing: str, path: str | os.PathLike | None = None) -> FileError:
    """One line for an OSError: what was being done to which path, the system's reason, the fix.

    `doing` is a verb phrase such as "write checkpoint"; nothing was changed by the failed step.
    """
    where = path if path is not None else exc.filename
    reason = exc.strerror or str(exc) or type(exc).__name__
    code = errno.errorcode.get(exc.errno or -1)
    fix = _FIXES.get(exc.errno or -1, "check the path and try again")
    return FileError(f"cannot {doing} {where}: {reason}{f' ({code})' if code else ''}; {fix}")
