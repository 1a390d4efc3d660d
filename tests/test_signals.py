"""Graceful stops: the first SIGINT or SIGTERM asks for a stop; a second SIGINT quits at once."""

import os
import signal

import pytest

from alexnet_cifar.training.signals import EXIT_CODES, StopOnSignal


def test_first_signal_asks_to_stop_and_a_second_sigint_quits():
    before = signal.getsignal(signal.SIGINT)
    with StopOnSignal() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before  # the previous handlers come back


def test_exit_codes_are_what_shells_report():
    assert EXIT_CODES[signal.SIGINT] == 130 and EXIT_CODES[signal.SIGTERM] == 143
    assert EXIT_CODES.get(getattr(signal, "SIGHUP", None), 129) == 129  # where the platform has SIGHUP
