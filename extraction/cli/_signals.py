"""Interrupts of a run the CLI waits for: Ctrl-C and SIGTERM both cancel it cleanly.

A command started in the background by a non-interactive shell inherits SIGINT *ignored*
(POSIX job control), so Python never installs its Ctrl-C handler; and SIGTERM's default
kills the process with no chance to record anything, leaving the job PROCESSING until its
heartbeat goes stale. While a run is waited for, both signals are therefore set explicitly
to raise :class:`KeyboardInterrupt` in the main thread, which cancels the job (work kept).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["exit_now_if_interrupted", "interrupted", "interrupts_raise"]

#: Set once a run of this process was interrupted and its outcome recorded.
interrupted = threading.Event()


def _raise(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextmanager
def interrupts_raise() -> Iterator[None]:
    """Within the block SIGINT and SIGTERM raise KeyboardInterrupt (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, _raise)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def exit_now_if_interrupted(code: int) -> None:
    """After an interrupt, leave without Prefect's exit-time drain of queued logs and events.

    The outcome is in the database and on the terminal by then; the drain sends the flow
    run's last log lines to the Prefect API and took seconds on a busy machine, which is not
    what a user who pressed Ctrl-C waits for. Skipping the exit handlers also skips the
    embedded server's stop, which the server's watchdog does instead (flows/_server.py).
    """
    if not interrupted.is_set():
        return
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
