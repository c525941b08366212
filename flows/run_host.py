"""The run host: a warm process that runs job flows for the CLI, beside the local server.

Why it exists: before its first LLM call, a run started by ``extractflow run sample`` spends
seconds importing Prefect, the OpenAI SDK and the extraction stages (about 4 s of CPU on two
cores) and Prefect's first flow run in a process is slower than the next ones. With
``extractflow server start``, this host starts next to the Prefect server and pays that once:
the CLI creates the job, hands its id to the host over HTTP on 127.0.0.1
(:mod:`flows.run_host_client`) and follows the job row as it does for any run.

What runs is what the CLI would run in its own process (:func:`flows.launch.run_local`, in a
thread per job): the same flow run name, tags, parameters, log lines, artifacts, cancellation
(the job row, the UI's Cancel) and final state. The CLI sends its settings' fingerprint and
the host takes the job only when its own is the same (same database, LLM endpoint, key,
limits, code), so a run never silently uses other settings than the command line's; the
CLI runs it itself otherwise.

Requests need the token written, readable by its owner only, in the server's state file.
SIGTERM (``extractflow server stop``) cancels the jobs it runs, keeping their work, and
waits for them to record it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import threading
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from flows.run_host_client import TOKEN_HEADER, fingerprint

__all__ = ["RunHost", "main"]

logger = logging.getLogger("extractflow.run_host")

#: Seconds ``server stop`` gives the jobs it cancels to record their end.
STOP_GRACE_SECONDS = 30.0


@dataclass
class _HostedRun:
    """One job's flow, running in a thread of the host."""

    job_id: str
    state: str | None = None
    message: str | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def describe(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "running": not self.done.is_set(),
                "state": self.state, "message": self.message, "error": self.error}


class RunHost:
    """The jobs this process runs, and what the HTTP handler asks of them."""

    def __init__(self) -> None:
        self.fingerprint = fingerprint()
        self._runs: dict[str, _HostedRun] = {}
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    def warm_up(self) -> None:
        """Import everything a run needs, so the first job starts as fast as the next."""
        from flows.bootstrap import bootstrap

        bootstrap(llm_stack=True)
        import prefect.flow_engine
        import prefect.task_engine  # noqa: F401

        import flows._shards
        import flows.full_run
        import flows.launch
        import flows.sample_run  # noqa: F401
        from extraction import db
        from extraction.run import preload

        with db.session_scope():  # the engine and its schema check
            pass
        preload.wait()

    def submit(self, job_id: str, kind: str, project: str, *, force: bool) -> _HostedRun:
        from extraction.models import JobKind

        with self._lock:
            current = self._runs.get(job_id)
            if current is not None and not current.done.is_set():
                return current  # the same request twice: one run
            run = _HostedRun(job_id=job_id)
            self._runs[job_id] = run
        threading.Thread(target=self._run, args=(run, JobKind(kind), project, force),
                         name=f"run-{job_id[:8]}", daemon=True).start()
        return run

    def _run(self, run: _HostedRun, kind: Any, project: str, force: bool) -> None:
        from extraction import db
        from extraction.run import jobs
        from extraction.run.report import flow_parameters
        from flows.launch import run_local

        logger.info("job %s: %s run of project %s starts", run.job_id, kind.value, project)
        try:
            with db.session_scope() as s:
                parameters = flow_parameters(jobs.get_job(s, run.job_id))
            state = run_local(kind, project, run.job_id, force=force, parameters=parameters)
            run.state = getattr(getattr(state, "type", None), "value", None)
            run.message = getattr(state, "message", None)
            logger.info("job %s: the flow run ended %s", run.job_id, run.state)
        except BaseException as exc:
            run.error = f"{type(exc).__name__}: {exc}"
            logger.exception("job %s: the run failed in the run host", run.job_id)
        finally:
            run.done.set()

    def status(self, job_id: str) -> dict[str, Any] | None:
        run = self._runs.get(job_id)
        return None if run is None else run.describe()

    def _all(self) -> list[_HostedRun]:
        with self._lock:  # a submit in another thread may add a run meanwhile
            return list(self._runs.values())

    def running(self) -> list[str]:
        return [run.job_id for run in self._all() if not run.done.is_set()]

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Cancel every job still running (their work is kept) and wait for them to end."""
        from extraction import db
        from extraction.run import jobs
        from flows._limits import stop_new_calls

        self.stopping.set()
        stop_new_calls()  # the whole process is going: no new LLM call anywhere
        for job_id in self.running():
            try:
                with db.session_scope() as s:
                    job = jobs.get_job(s, job_id)
                    if job.status not in jobs.TERMINAL:
                        jobs.cancel_job(s, job, reason="the run host stopped "
                                        "(extractflow server stop)")
            except Exception:
                logger.exception("job %s: could not cancel it", job_id)
        for run in self._all():
            run.done.wait(timeout=grace)


def _handler(host: RunHost, token: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("%s " + format, self.address_string(), *args)

        def _reply(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _allowed(self) -> bool:
            if secrets.compare_digest(self.headers.get(TOKEN_HEADER, ""), token):
                return True
            self._reply(HTTPStatus.FORBIDDEN, {"error": "wrong or missing token"})
            return False

        def do_GET(self) -> None:
            if not self._allowed():
                return
            if self.path == "/health":
                self._reply(HTTPStatus.OK, {"pid": os.getpid(), "fingerprint": host.fingerprint,
                                            "running": host.running()})
                return
            if self.path.startswith("/runs/"):
                found = host.status(self.path.removeprefix("/runs/"))
                if found is None:
                    self._reply(HTTPStatus.NOT_FOUND, {"error": "no such run here"})
                else:
                    self._reply(HTTPStatus.OK, found)
                return
            self._reply(HTTPStatus.NOT_FOUND, {"error": f"no page {self.path}"})

        def do_POST(self) -> None:
            if not self._allowed():
                return
            if self.path != "/runs":
                self._reply(HTTPStatus.NOT_FOUND, {"error": f"no page {self.path}"})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                job_id = str(uuid.UUID(body["job_id"]))
                kind, project = str(body["kind"]), str(body["project"])
                force, theirs = bool(body.get("force", False)), str(body["fingerprint"])
            except (ValueError, KeyError, TypeError) as exc:
                self._reply(HTTPStatus.BAD_REQUEST, {"error": f"bad request: {exc}"})
                return
            if host.stopping.is_set():
                self._reply(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "the run host is stopping"})
                return
            if theirs != host.fingerprint:
                self._reply(HTTPStatus.CONFLICT, {
                    "error": "the run host runs with other settings or code than this command "
                             "(it started before they changed)"})
                return
            run = host.submit(job_id, kind, project, force=force)
            self._reply(HTTPStatus.ACCEPTED, run.describe())

    return Handler


def main(argv: list[str] | None = None) -> None:
    """``python -m flows.run_host --port P --token-file F``: serve until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-file", required=True,
                        help="file holding the token requests must carry")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "httpx2"):  # a line per API or LLM call otherwise
        logging.getLogger(chatty).setLevel(logging.WARNING)
    with open(args.token_file, encoding="utf-8") as f:
        token = f.read().strip()
    from extraction.cli._common import quiet_prefect_console

    quiet_prefect_console()
    host = RunHost()
    host.warm_up()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _handler(host, token))
    server.daemon_threads = True

    def on_term(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    logger.info("run host ready on 127.0.0.1:%d (pid %d)", args.port, os.getpid())
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        host.stop()
        server.server_close()
        logger.info("run host stopped")


if __name__ == "__main__":
    main()
