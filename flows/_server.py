"""The embedded Prefect API server: started by the command that needs it, gone with it.

Without ``PREFECT_API_URL`` Prefect starts a temporary API server (a ``uvicorn`` child
process) on the first API call and stops it at interpreter exit. Two things go wrong with
that when a run is killed, and :func:`start_embedded_server` fixes both before the first
call:

* **Orphans.** A SIGKILL'd command runs no exit handler, so its server lived on (re-parented
  to init) for good. A watchdog child (``sh``) holds a pipe from this process; when this
  process ends in any way the pipe closes, and the watchdog stops the server.
* **Forgotten leases.** The server kept concurrency leases in memory, so the slots of a run
  that died were counted by the limit (in Prefect's database) while no later server knew
  the lease to release. The servers of this machine are told to keep leases in files under
  ``PREFECT_HOME`` instead, which every later command's server can read and release
  (``flows/_limits.py`` does, before a run waits).

With a Prefect server configured nothing here applies: that server outlives runs and its own
repossessor service revokes lapsed leases.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import threading
from typing import Any

__all__ = ["FILE_LEASE_STORAGE", "embedded", "start_embedded_server", "use_file_leases"]

FILE_LEASE_STORAGE = "prefect.server.concurrency.lease_storage.filesystem"
_SETTING = "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"
_lock = threading.Lock()
_watchdog: subprocess.Popen[bytes] | None = None

#: Waits for its stdin to close (this process ended), then stops the server it was given.
_WATCH = 'cat >/dev/null; kill -TERM "$1" 2>/dev/null; sleep 5; kill -KILL "$1" 2>/dev/null'


def embedded() -> bool:
    """Whether Prefect runs on a temporary in-command server (no ``PREFECT_API_URL``)."""
    from prefect.settings import PREFECT_API_URL

    return not PREFECT_API_URL.value()


def use_file_leases() -> None:
    """Make this process's embedded servers keep concurrency leases in files (user value wins).

    Prefect reads its settings when it is imported; the server is a child process that reads
    them again from the environment, so the environment and the settings in this process
    are both set.
    """
    if os.environ.get(_SETTING):
        return
    os.environ[_SETTING] = FILE_LEASE_STORAGE
    from prefect.settings import get_current_settings

    concurrency = get_current_settings().server.concurrency
    if concurrency.lease_storage != FILE_LEASE_STORAGE:
        object.__setattr__(concurrency, "lease_storage", FILE_LEASE_STORAGE)


def start_embedded_server() -> Any | None:
    """Start Prefect's temporary server now, with file leases and a watchdog; None if a
    server is configured. Safe to call more than once."""
    global _watchdog
    if not embedded():
        return None
    use_file_leases()
    from prefect.server.api.server import SubprocessASGIServer

    with _lock:
        server = SubprocessASGIServer()
        # The server is a child in this terminal's process group, so a Ctrl-C would stop it
        # at once, while the run still needs it to record its cancellation. A signal mask is
        # inherited by a child: started with SIGINT blocked, it is stopped by this process
        # (SIGTERM at exit) or by the watchdog, not by the keyboard.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            server.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        process = server.server_process
        if process is not None and (_watchdog is None or _watchdog.poll() is not None):
            _watchdog = subprocess.Popen(
                ["sh", "-c", _WATCH, "extractflow-server-watchdog", str(process.pid)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C to the terminal's group must not kill it
            )
            # On a normal exit Prefect stops the server itself (its exit handler was
            # registered first, so it runs after this one): the watchdog is not needed then.
            atexit.register(_watchdog.kill)
        return server
