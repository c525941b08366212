"""Import the LLM stack (openai, instructor, the extractor) in a background thread.

Importing it takes about a second of CPU, and nothing a run does before its extract stage
needs it. A run's process spends longer than that getting there — Prefect creates the flow
run and, in a fresh process, starts its temporary API server — so the entry points start
the import (:func:`flows.bootstrap.bootstrap`) and the extract stage only waits for the
rest of it (:func:`wait`, in :func:`extraction.run.assembly.build_engine`). The effect on
the time to a run's first LLM call is measured by ``benchmarks/bench_full_run.py``.

If the background import fails, nothing is reported here: :func:`wait` returns and the
caller's own import raises the real error where it can be handled.
"""

from __future__ import annotations

import importlib
import threading

__all__ = ["LLM_STACK", "start", "wait"]

#: What the extract stage needs that nothing earlier in a run imports. ``openai.resources``
#: (chat, files, batches) is what the SDK imports on a client's first call, the largest part.
LLM_STACK = ("extraction.llm.client", "extraction.run.extractor", "openai.resources")

_thread: threading.Thread | None = None
_lock = threading.Lock()


def _import_all() -> None:
    for name in LLM_STACK:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the caller's own import reports it (see module doc)
            return


def start() -> None:
    """Begin the background import once per process (later calls do nothing)."""
    global _thread
    with _lock:
        if _thread is None:
            _thread = threading.Thread(target=_import_all, name="import-llm-stack",
                                       daemon=True)
            _thread.start()


def wait() -> None:
    """Block until the background import has finished (or was never started)."""
    thread = _thread
    if thread is not None:
        thread.join()
