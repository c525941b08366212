"""Import the LLM stack (openai, instructor, the extractor) in the background.

Importing it takes ~1 s of CPU (openai alone ~0.7 s on the 2-core reference machine). A run's
process always spends longer than that between loading its flow module and reaching the
extract stage — Prefect creates the flow run, and in a fresh process starts its ephemeral
API server (5–10 s) — so the import is started when the flow module loads and the extract
stage only waits for it. Measured: the time from the job's start to its first LLM call went
from ~1.4 s to ~0.5 s (C=32, L=1 s, ``benchmarks/bench_full_run.py``), which is what brings
a 640-document run within 90 % of the ideal throughput.

If the background import fails, nothing is reported here: `wait` returns and the caller's
own import raises the real error where it can be handled.
"""

from __future__ import annotations

import importlib
import threading

__all__ = ["LLM_STACK", "start", "wait"]

#: What the extract stage needs that nothing earlier in a run imports.
LLM_STACK = ("extraction.llm.client", "extraction.run.extractor")

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
