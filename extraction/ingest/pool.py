"""Parse many files at once in worker processes, without letting one file sink the batch.

PyMuPDF is not thread-safe (the PDF parser holds a module lock), so threads cannot parse
in parallel; processes can. `ParsePool` wraps a ``ProcessPoolExecutor`` and adds what a
batch of 10,000 unknown files needs:

* Results come back in the order the paths were given.
* Workers are forked from a *forkserver*, not from this process (which runs Prefect's
  threads and event loops and must not be forked) and not spawned afresh: importing the
  parsers takes about a second and ~150 MB, so the forkserver pays it once and each worker
  is a cheap copy-on-write fork. Platforms without forkserver use "spawn".
* The workers start in the background. Until they answer, files are parsed in the calling
  thread, so a pool never makes a batch slower to begin than parsing in-process.
* A file that kills its worker (a MuPDF segfault, the OOM killer) breaks the executor. The
  pool starts a fresh one and re-parses the unfinished files one at a time, so the culprit
  is recorded as failed ("the parser crashed…") and every other file is parsed normally.
* If worker processes cannot start at all (a restricted sandbox), the pool logs a warning
  and keeps parsing in-process rather than declaring every file crashed.
* ``workers <= 1`` parses in the calling thread, with no worker processes at all.

Workers ignore Ctrl-C (the parent decides when to stop) and are replaced after
``_MAX_TASKS_PER_CHILD`` files, which caps slow memory growth inside MuPDF. Only builtins
and the parser function cross the process boundary, so a worker imports nothing but the
parsers.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Final

from extraction.documents import STATUS_FAILED, ParsedDocument, parse_document

__all__ = ["ParsePool", "ParseFn", "default_workers", "parse_pool"]

logger = logging.getLogger(__name__)

#: Parses one path (``parse(path, max_bytes=...)``); must be importable by worker processes.
ParseFn = Callable[..., ParsedDocument]

_MAX_TASKS_PER_CHILD: Final = 2000
_START_TIMEOUT: Final = 180.0  # seconds for fresh workers to answer the start-up probe
_TURN_WAIT: Final = 30.0  # seconds a chunk waits for the chunks before it to hand out files
_PRELOAD: Final = ["__main__", "extraction.documents"]
_CRASH_MESSAGE: Final = ("the parser crashed while reading this file (its worker process "
                         "died); the file is probably malformed in a way the PDF/DOCX "
                         "library cannot handle")

Submission = tuple[ProcessPoolExecutor, "Future[ParsedDocument]"]


def default_workers(configured: int) -> int:
    """How many parse processes to use: the configured number, at most one per CPU."""
    return max(1, min(configured, os.cpu_count() or 1))


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)  # no effect once the server runs
        return context
    return multiprocessing.get_context("spawn")


class ParsePool:
    """Parse files in ``workers`` processes (or in-process when ``workers <= 1``).

    Thread-safe: several threads (e.g. Prefect task runs) may call `parse` at once and share
    the worker processes. Use as a context manager, or call `close`.

    Args:
        workers: Number of worker processes; 1 or less parses in the calling thread.
        parse: The per-file parser (`parse_document` unless a test swaps it).
    """

    def __init__(self, workers: int, *, parse: ParseFn = parse_document) -> None:
        self.workers = max(1, workers)
        self._parse = parse
        self._lock = threading.Lock()
        self._hand_out = threading.Lock()  # see `parse`
        self._turns = threading.Condition()
        self._next_turn = 0
        self._executor: ProcessPoolExecutor | None = None
        self._closed = False
        self._in_process = self.workers <= 1
        self._ready = threading.Event()
        if self._in_process:
            self._ready.set()
        else:
            threading.Thread(target=self._warm_up, name="parse-pool-start",
                             daemon=True).start()

    def __enter__(self) -> ParsePool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def parallel(self) -> bool:
        """Whether files go to worker processes (False before they start or if they can't)."""
        return self._ready.is_set() and not self._in_process

    def wait_until_ready(self, timeout: float | None = None) -> bool:
        """Block until the workers answered (or failed to start); True if they run."""
        self._ready.wait(timeout)
        return self.parallel

    def parse(self, paths: Sequence[str], *, max_bytes: int | None = None,
              turn: int | None = None) -> list[ParsedDocument]:
        """Parse ``paths`` and return their documents in the same order.

        Never raises for a bad file; a file that crashes a worker comes back failed.

        Calls from several threads take turns to hand out their files (parse them, while
        the workers are not up): parsing in-process is CPU work under the GIL and PyMuPDF's
        lock, so two chunks interleaving file by file would both finish late instead of the
        first one early — and the flow stores a chunk while the next one is parsed.
        ``turn`` (the chunk's index) makes the turns go in chunk order; see `skip_turn`.
        """
        slots: list[ParsedDocument | Submission] = []
        with self._turn(turn):
            for path in paths:
                submission = self._submit(path, max_bytes) if self.parallel else None
                slots.append(submission or self._parse(path, max_bytes=max_bytes))
        return [slot if isinstance(slot, ParsedDocument) else self._result(path, slot,
                                                                           max_bytes)
                for path, slot in zip(paths, slots)]

    def skip_turn(self, turn: int) -> None:
        """Let later turns go: chunk ``turn`` will not call `parse` (it failed before)."""
        with self._turns:
            self._next_turn = max(self._next_turn, turn + 1)
            self._turns.notify_all()

    @contextmanager
    def _turn(self, turn: int | None) -> Iterator[None]:
        """Hold the hand-out lock; with ``turn``, first wait for the earlier turns.

        The wait is bounded (`_TURN_WAIT`): order only makes the pipeline faster, so a
        turn whose chunk never arrives must not block the ones after it.
        """
        if turn is not None:
            with self._turns:
                self._turns.wait_for(lambda: self._next_turn >= turn, timeout=_TURN_WAIT)
        try:
            with self._hand_out:
                yield
        finally:
            if turn is not None:
                self.skip_turn(turn)

    def close(self) -> None:
        """Stop the worker processes (waits for files being parsed)."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    # ------------------------------------------------------------ internals

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers, mp_context=_context(), initializer=signal.signal,
            initargs=(signal.SIGINT, signal.SIG_IGN), max_tasks_per_child=_MAX_TASKS_PER_CHILD)

    def _probe(self, executor: ProcessPoolExecutor) -> bool:
        """Whether ``executor``'s workers can run at all (a no-op round trip)."""
        try:
            executor.submit(os.getpid).result(timeout=_START_TIMEOUT)
            return True
        except Exception as exc:  # noqa: BLE001 - whatever stops workers: fall back, say why
            executor.shutdown(wait=False, cancel_futures=True)
            logger.warning("parse worker processes cannot start (%s: %s); parsing in this "
                           "process instead", type(exc).__name__, exc)
            return False

    def _warm_up(self) -> None:
        """Start the first workers in the background (the forkserver imports the parsers)."""
        executor = self._new_executor()
        ok = self._probe(executor)
        with self._lock:
            if ok and not self._closed:
                self._executor = executor
                executor = None  # type: ignore[assignment]
            elif not ok:
                self._in_process = True
        if ok and executor is not None:  # closed meanwhile
            executor.shutdown(wait=False, cancel_futures=True)
        self._ready.set()

    def _submit(self, path: str, max_bytes: int | None) -> Submission | None:
        """Send one file to a worker; None when files must be parsed in-process."""
        while True:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the parse pool is closed")
                executor = self._executor
                if executor is None and not self._in_process:
                    executor = self._executor = self._restart()
            if executor is None:
                return None
            try:
                return executor, executor.submit(self._parse, path, max_bytes=max_bytes)
            except BrokenProcessPool:  # a worker died meanwhile: start fresh ones
                self._replace(executor)

    def _restart(self) -> ProcessPoolExecutor | None:
        """Fresh workers after a crash (lock held); None if they cannot start."""
        executor = self._new_executor()
        if self._probe(executor):
            return executor
        self._in_process = True
        return None

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        """Drop a broken executor (once, even if several threads notice it)."""
        with self._lock:
            if self._executor is broken:
                self._executor = None
        broken.shutdown(wait=False, cancel_futures=True)

    def _result(self, path: str, submission: Submission, max_bytes: int | None
                ) -> ParsedDocument:
        """The file's document; after a worker crash, parse it alone to see if it is the
        culprit (declared crashed only after killing two fresh workers, so a crash caused
        by another file sharing the executor does not condemn it)."""
        crashes = 0
        while True:
            executor, future = submission
            try:
                return future.result()
            except BrokenProcessPool:
                self._replace(executor)
                crashes += 1
            if crashes >= 2:
                return _crashed(path)
            retry = self._submit(path, max_bytes)
            if retry is None:
                return self._parse(path, max_bytes=max_bytes)
            submission = retry


def _crashed(path: str) -> ParsedDocument:
    return ParsedDocument(filename=os.path.basename(path), source_path=path,
                          status=STATUS_FAILED, error=_CRASH_MESSAGE)


@contextmanager
def parse_pool(workers: int, *, parse: ParseFn = parse_document) -> Iterator[ParsePool]:
    """A `ParsePool` closed on exit."""
    pool = ParsePool(workers, parse=parse)
    try:
        yield pool
    finally:
        pool.close()
