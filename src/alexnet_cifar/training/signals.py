"""Graceful stops: the first SIGINT, SIGTERM or SIGHUP asks the loop to stop after the current batch;
a second SIGINT quits at once (as a KeyboardInterrupt)."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

log = logging.getLogger("alexnet_cifar")
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + signal number, as shells report
if hasattr(signal, "SIGHUP"):  # a closed terminal or ssh session: stop as cleanly as for SIGTERM
    EXIT_CODES[signal.SIGHUP] = 129


class StopOnSignal:
    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        log.info(f"{signal.Signals(signum).name}: stopping after this batch (Ctrl-C again to quit at once)")

    def __enter__(self) -> StopOnSignal:
        if threading.current_thread() is threading.main_thread():  # signals can only be set there
            for signum in EXIT_CODES:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
