"""Atomic file writes: a crash or a full disk mid-write leaves the previous file (or none), never half
of one, and an operating-system refusal is one `FileError` line naming the file."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from ..errors import file_error


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Write to a temp file in the same folder, flush and fsync it, then os.replace it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # a read-only folder must not raise a second error here
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise file_error(exc, "write", path) from None
        raise
    _sync_folder(path.parent)


def write_bytes_atomic(path: str | os.PathLike, content: bytes | io.BytesIO) -> None:
    """The whole of `content` into `path`, atomically."""
    with atomic_write(path) as f:
        f.write(content.getbuffer() if isinstance(content, io.BytesIO) else content)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); where folders cannot be opened, the rename stands."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
