"""Benchmark ingest: pages per second and peak RSS against a bare PyMuPDF/python-docx loop.

Usage::

    .venv/bin/python -m benchmarks.bench_ingest                    # 300 PDFs x 10 pages + 100 DOCX
    .venv/bin/python -m benchmarks.bench_ingest --repeat 3 --workers 1 2
    .venv/bin/python -m benchmarks.bench_ingest --postgres         # store in PostgreSQL (127.0.0.1)
    .venv/bin/python -m benchmarks.bench_ingest --skip-flow        # no Prefect run

A corpus is written with ``testing/document_factory.py`` into a temp folder. Each measurement
then runs in a fresh Python process, so its peak RSS (``ru_maxrss``) is its own. In the
memory runs, worker processes (the parse pool's forkserver and workers) are measured too:
the parent samples the child's whole process tree every 0.1 s with psutil during the
measured window and keeps the peak of the summed PSS (proportional set size: pages shared
by forked workers are split between them, not counted once per process). The timed runs
do not sample (it costs CPU on a 2-core machine). Modes:

* ``bare`` — open each file with PyMuPDF / python-docx, extract the text of every page /
  paragraph / table cell, close. No hashing, no checks, no database: the ceiling.
* ``ingest wN`` — ``extraction.ingest.ingest_paths`` with N parse processes (1 = in the
  calling process), into a fresh database: hashing, sniffing, parsing, de-duplication and
  storage, parse-pool start-up included.
* ``flow wN`` — the Prefect ``ingest`` flow on the ephemeral API. Prefect's start-up (the
  temporary API server and a first trivial flow run with one task run) is timed separately
  and not counted; what remains of Prefect's cost (creating the flow run and its task runs,
  artifacts: ~0.3 s a run) is counted.

Pages: a PDF counts its pages, a DOCX counts one (the same rule in every mode). The memory
check ingests the first 100 files and then all of them; peak RSS must not grow with the
number of files. Wall-clock figures on a shared machine are noisy: the CPU seconds of the
process and its children are printed next to them, and ``--repeat`` keeps the best run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parent.parent

PG_URL = os.environ.get("EXTRACTFLOW_TEST_PG_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")
WORDS = ("grant", "study", "patient", "budget", "policy", "sample", "outcome", "region",
         "method", "result", "council", "dose", "survey", "income", "school", "trial")


# ---------------------------------------------------------------- corpus


def build_corpus(directory: Path, pdfs: int, pages: int, docx: int, seed: int = 7) -> float:
    """Write ``pdfs`` text PDFs of ``pages`` pages and ``docx`` Word files; returns seconds."""
    from testing.document_factory import Heading, Table, make_docx, make_pdf

    started = time.perf_counter()
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)

    def words(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    for index in range(pdfs):  # interleave names so any prefix of the sorted list is mixed
        make_pdf(directory / f"f{index * 4:05d}.pdf", [words(280) for _ in range(pages)],
                 metadata={"title": f"Report {index}"})
    for index in range(docx):
        make_docx(directory / f"f{index * 12 + 1:05d}.docx",
                  [Heading(f"Memo {index}"), *(words(90) for _ in range(12)),
                   Table([["field", "value"], ["index", str(index)], ["kind", "memo"]])])
    return time.perf_counter() - started


def _files(corpus: Path, limit: int | None) -> list[Path]:
    files = sorted(p for p in corpus.iterdir() if p.suffix in (".pdf", ".docx"))
    return files[:limit] if limit else files


# ---------------------------------------------------------------- child process modes


def _rss(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # kB on Linux


class TreeMemory:
    """Samples, from the parent, the PSS of a child process and all its descendants while
    the child's ``window`` file exists; keeps the peak of the sum.

    Sampling runs here, not in the measured process: reading /proc/*/smaps for every
    process ten times a second costs CPU and the GIL, and would slow what it measures.
    """

    def __init__(self, pid: int, window: Path, interval: float = 0.1) -> None:
        import psutil

        self._root = psutil.Process(pid)
        self._window = window
        self._interval = interval
        self._stop = threading.Event()
        self.peak_mb = 0.0
        self.peak_processes = 1
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            if self._window.exists():
                self._sample()

    def _sample(self) -> None:
        import psutil

        total, count = 0, 0
        try:
            processes = [self._root, *self._root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for process in processes:
            try:
                total += process.memory_full_info().pss
                count += 1
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        if total / 2**20 > self.peak_mb:
            self.peak_mb, self.peak_processes = total / 2**20, count


@contextlib.contextmanager
def _measuring(window: Path) -> Iterator[None]:
    """Mark the measured window for the parent's memory sampler (a file that exists)."""
    window.touch()
    try:
        yield
    finally:
        window.unlink()


def _cpu() -> tuple[float, float]:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), \
        resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def _bare(files: list[Path]) -> int:
    import docx
    import pymupdf

    pages = 0
    for path in files:
        if path.suffix == ".pdf":
            document = pymupdf.open(path)
            texts = [page.get_text() for page in document]
            pages += len(texts)
            document.close()
        else:
            document = docx.Document(str(path))
            texts = [p.text for p in document.paragraphs]
            texts += [cell.text for table in document.tables for row in table.rows
                      for cell in row.cells]
            pages += 1
    return pages


def _new_project(url: str) -> None:
    from extraction import codebook, db
    from extraction.db import session_scope

    db.upgrade_database(url)
    with session_scope(url) as session:
        codebook.create_project(session, {"name": "bench"})


def _stage(files: list[Path], folder: Path) -> Path:
    """Link the chosen files into a folder, so the ingest reads exactly them."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        (folder / path.name).symlink_to(path)
    return folder


def run_child(args: argparse.Namespace) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    os.environ["EXTRACTFLOW_DATABASE_URL"] = args.db
    files = _files(Path(args.corpus), args.limit)
    result: dict[str, Any] = {"mode": args.child, "files": len(files)}
    window = Path(args.scratch) / "measuring"
    baseline = _rss(resource.RUSAGE_SELF)
    if args.child == "bare":
        import docx  # noqa: F401 - imports are not part of the loop's time
        import pymupdf  # noqa: F401

        baseline = _rss(resource.RUSAGE_SELF)
        cpu0 = _cpu()
        started = time.perf_counter()
        with _measuring(window):
            result["pages"] = _bare(files)
    else:
        _new_project(args.db)
        folder = _stage(files, Path(args.scratch) / "input")
        if args.child == "flow":
            from prefect import flow, task

            from flows.ingest import ingest

            @task(name="bench-warm-up-task")
            def nothing() -> None:
                return None

            @flow(name="bench-warm-up")
            def warm_up() -> None:
                nothing()  # a process's first task run imports Prefect's task engine (~0.35 s)

            before = time.perf_counter()
            warm_up()
            result["prefect_startup"] = time.perf_counter() - before
            baseline = _rss(resource.RUSAGE_SELF)
            cpu0 = _cpu()
            started = time.perf_counter()
            with _measuring(window):
                summary = asyncio.run(ingest("bench", [str(folder)], workers=args.workers))
            result["pages"], result["ok"] = summary["pages"], summary["ok"]
        else:
            from extraction.ingest import ingest_paths

            baseline = _rss(resource.RUSAGE_SELF)
            cpu0 = _cpu()
            started = time.perf_counter()
            with _measuring(window):
                summary = ingest_paths("bench", [str(folder)], workers=args.workers)
            result["pages"], result["ok"] = summary.pages, summary.ok
    result["seconds"] = time.perf_counter() - started
    cpu1 = _cpu()
    result["cpu_self"], result["cpu_children"] = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    result["rss_baseline_mb"] = baseline
    result["rss_peak_mb"] = _rss(resource.RUSAGE_SELF)
    Path(args.out).write_text(json.dumps(result))


# ---------------------------------------------------------------- parent


def measure(mode: str, corpus: Path, db_url: str, *, workers: int = 1,
            limit: int | None = None, tree: bool = False) -> dict[str, Any]:
    """Run one mode in a fresh process and return its figures.

    ``tree``: also sample the PSS of its whole process tree. Only the memory runs do: reading
    /proc/*/smaps of six processes ten times a second costs a good part of a core, which
    would slow the timed runs with worker processes more than the bare loop.
    """
    scratch = Path(tempfile.mkdtemp(prefix="bench-ingest-run-"))
    url = db_url if db_url != "sqlite" else f"sqlite:///{scratch / 'bench.db'}"
    if url.startswith("postgresql"):
        _reset_pg(url)
    env = dict(os.environ, PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_LOGGING_LEVEL="WARNING", PREFECT_SERVER_LOGGING_LEVEL="ERROR",
               EXTRACTFLOW_HOME=str(scratch / "home"), PYTHONPATH=str(ROOT))
    out, log = scratch / "result.json", scratch / "output.log"
    command = [sys.executable, "-m", "benchmarks.bench_ingest", "--child", mode,
               "--corpus", str(corpus), "--db", url, "--scratch", str(scratch),
               "--out", str(out), "--workers", str(workers)] + (
                   ["--limit", str(limit)] if limit else [])
    # Output goes to files, not pipes: a grandchild that outlives the child (a server it
    # started) must not keep this process waiting for end-of-file.
    with open(log, "wb") as sink:
        child = subprocess.Popen(command, env=env, stdout=sink, stderr=sink)
        sampler = TreeMemory(child.pid, scratch / "measuring") if tree else None
        with sampler or contextlib.nullcontext():
            returncode = child.wait()
    try:
        if returncode != 0 or not out.exists():
            tail = log.read_text(errors="replace")[-3000:]
            raise SystemExit(f"{mode} failed (exit {returncode}):\n{tail}")
        result: dict[str, Any] = json.loads(out.read_text())
        if sampler is not None:
            result["tree_pss_mb"], result["tree_processes"] = (sampler.peak_mb,
                                                               sampler.peak_processes)
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _reset_pg(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS bench_ingest CASCADE"))
        conn.execute(text("CREATE SCHEMA bench_ingest"))
    engine.dispose()


def best_of(repeat: int, mode: str, corpus: Path, db_url: str, **kwargs: Any
            ) -> dict[str, Any]:
    runs = [measure(mode, corpus, db_url, **kwargs) for _ in range(repeat)]
    return min(runs, key=lambda r: r["seconds"])


def _row(label: str, r: dict[str, Any], bare_pps: float | None) -> str:
    pps = r["pages"] / r["seconds"]
    share = f"{100 * pps / bare_pps:5.0f} %" if bare_pps else "  100 %"
    cpu = r["cpu_self"] + r["cpu_children"]
    return (f"{label:<12} {r['files']:>5} {r['pages']:>6} {r['seconds']:>8.2f} {pps:>9.0f} "
            f"{share} {cpu:>7.2f} {r['rss_baseline_mb']:>8.0f} {r['rss_peak_mb']:>8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pdfs", type=int, default=300)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--docx", type=int, default=100)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--skip-flow", action="store_true")
    parser.add_argument("--memory-sizes", type=int, nargs=2, default=[100, 400])
    parser.add_argument("--corpus-dir", type=Path, help="Reuse (or keep) the corpus here.")
    # internal: one measurement in a child process
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.workers = args.workers[0]
        run_child(args)
        return

    corpus = args.corpus_dir or Path(tempfile.mkdtemp(prefix="bench-ingest-corpus-"))
    if not any(corpus.glob("*.pdf")):
        took = build_corpus(corpus, args.pdfs, args.pages, args.docx)
        print(f"corpus: {args.pdfs} PDFs x {args.pages} pages + {args.docx} DOCX in {corpus} "
              f"(written in {took:.1f} s)", flush=True)
    db_url = f"{PG_URL}?options=-csearch_path%3Dbench_ingest" if args.postgres else "sqlite"
    print(f"database: {'PostgreSQL' if args.postgres else 'SQLite file'}; "
          f"CPUs: {os.cpu_count()}; load average: {os.getloadavg()[0]:.1f}; "
          f"best of {args.repeat}", flush=True)
    header = (f"{'mode':<12} {'files':>5} {'pages':>6} {'seconds':>8} {'pages/s':>9} "
              f"{'vs bare':>7} {'cpu s':>7} {'rss0 MB':>8} {'peak MB':>8}")
    print(header)
    print("-" * len(header))
    bare = best_of(args.repeat, "bare", corpus, db_url)
    bare_pps = bare["pages"] / bare["seconds"]
    print(_row("bare", bare, None), flush=True)
    for workers in args.workers:
        result = best_of(args.repeat, "ingest", corpus, db_url, workers=workers)
        print(_row(f"ingest w{workers}", result, bare_pps), flush=True)
    if not args.skip_flow:
        for workers in args.workers:
            result = best_of(args.repeat, "flow", corpus, db_url, workers=workers)
            print(_row(f"flow w{workers}", result, bare_pps)
                  + f"   (Prefect start-up {result['prefect_startup']:.1f} s, not counted)",
                  flush=True)
    print("\nmemory: peak RSS of the ingest process by number of files")
    for workers in args.workers:
        small, large = (measure("ingest", corpus, db_url, workers=workers, limit=n, tree=True)
                        for n in args.memory_sizes)
        print(f"  w{workers}: {small['files']} files: peak RSS {small['rss_peak_mb']:.0f} MB, "
              f"tree PSS {small['tree_pss_mb']:.0f} MB; {large['files']} files: peak RSS "
              f"{large['rss_peak_mb']:.0f} MB, tree PSS {large['tree_pss_mb']:.0f} MB")
    if not args.corpus_dir:
        shutil.rmtree(corpus, ignore_errors=True)


if __name__ == "__main__":
    main()
