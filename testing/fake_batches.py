"""OpenAI's Files and Batch APIs for the fake LLM server: ``/v1/files`` and ``/v1/batches``.

Why a fake: batch mode must be tested over real HTTP with the real ``openai`` SDK
(``client.files.create(purpose="batch")``, ``client.batches.create(...)``), including the
states a real provider goes through and the ways it fails, without waiting hours.

Mounted by :class:`~testing.fake_llm_server.FakeLLMServer` (``server.batches``; off with
``batch_api=False``, then both paths answer 404 like a server without them). What it does:

* ``POST /v1/files`` (multipart, ``purpose=batch``), ``GET /v1/files/{id}``,
  ``GET /v1/files/{id}/content``, ``DELETE /v1/files/{id}``;
* ``POST /v1/batches``, ``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``,
  ``GET /v1/batches`` (``limit``/``after`` cursor);
* a batch goes ``validating`` → ``in_progress`` → ``finalizing`` → ``completed``, or
  ``failed`` (input that does not validate: not JSON, no ``custom_id``, a repeated one, another
  url, more than ``max_requests`` lines or ``max_bytes``), ``expired`` (not done within
  ``expire_after`` seconds: the lines left go to the error file as ``batch_expired``) or
  ``cancelling`` → ``cancelled``;
* each line is answered by the server's own chat-completions path (``FakeLLMServer._chat``:
  the same responder, model check, context window and fault plan, so ``fail_when`` works on
  batch lines too), without its per-request latency: a batch takes ``completion_delay``
  seconds in all, its lines finishing one after another (``request_counts`` grow); while
  ``paused`` is set, batches wait in ``in_progress``;
* ``fail_share`` of the lines (drawn with ``seed``) fail with a 500 in the error file;
  ``output_faults`` adds broken lines to the output file (``"unknown_custom_id"``,
  ``"duplicate"``, ``"malformed"``), for the client's checks.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import itertools
import json
import random
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from testing.fake_llm_server import FakeLLMServer, _HttpRequest, _Reply

__all__ = ["FakeBatchAPI"]

_TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
_ENDPOINTS = frozenset({"/v1/chat/completions"})


@dataclass
class _File:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def card(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.data),
                "created_at": self.created_at, "filename": self.filename,
                "purpose": self.purpose, "status": "processed", "status_details": None}


@dataclass
class _Batch:
    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, Any] | None
    created_at: int
    status: str = "validating"
    errors: list[dict[str, Any]] | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    times: dict[str, int] = field(default_factory=dict)
    cancel_requested: bool = False

    def card(self) -> dict[str, Any]:
        card: dict[str, Any] = {
            "id": self.id, "object": "batch", "endpoint": self.endpoint,
            "input_file_id": self.input_file_id, "completion_window": self.completion_window,
            "status": self.status, "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id, "created_at": self.created_at,
            "expires_at": self.created_at + 24 * 3600, "metadata": self.metadata,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "request_counts": {"total": self.total, "completed": self.completed,
                               "failed": self.failed},
        }
        for name in ("in_progress_at", "finalizing_at", "completed_at", "failed_at",
                     "expired_at", "cancelling_at", "cancelled_at"):
            card[name] = self.times.get(name)
        return card


class FakeBatchAPI:
    """The files and batches endpoints of one :class:`FakeLLMServer` (its ``batches``)."""

    def __init__(self, server: FakeLLMServer, *, seed: int | None = None) -> None:
        self.server = server
        #: Seconds a batch takes from in_progress to its last line.
        self.completion_delay = 0.0
        #: Seconds a batch stays ``validating``.
        self.validation_delay = 0.0
        #: Seconds after which an unfinished batch expires (None: never).
        self.expire_after: float | None = None
        #: Share of lines that fail with a 500 (in the error file).
        self.fail_share = 0.0
        #: While True, batches stay in_progress without answering a line (tests release them).
        self.paused = False
        #: Broken lines added to each output file: unknown_custom_id, duplicate, malformed.
        self.output_faults: list[str] = []
        self.max_requests = 50_000
        self.max_bytes = 200 * 1024 * 1024
        self.files: dict[str, _File] = {}
        self.batches: dict[str, _Batch] = {}
        self.counts: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    def reset(self) -> None:
        self.files.clear()
        self.batches.clear()
        self.counts.clear()

    # ------------------------------------------------------------------ routing

    async def route(self, request: _HttpRequest, path: str) -> _Reply:
        """Answer one request under ``/v1/files`` or ``/v1/batches``."""
        from testing.fake_llm_server import _error_reply

        parts = path.strip("/").split("/")[1:]  # drop "v1"
        method = request.method
        if parts == ["files"] and method == "POST":
            return self._upload(request)
        if parts[0] == "files" and len(parts) >= 2:
            found = self.files.get(parts[1])
            if found is None:
                return _error_reply(404, f"No such File object: {parts[1]}", param="id")
            if len(parts) == 2 and method == "GET":
                return self._json(found.card())
            if len(parts) == 2 and method == "DELETE":
                del self.files[parts[1]]
                return self._json({"id": parts[1], "object": "file", "deleted": True})
            if parts[2:] == ["content"] and method == "GET":
                from testing.fake_llm_server import _Reply

                return _Reply(200, found.data, content_type="application/octet-stream")
        if parts == ["batches"] and method == "POST":
            return self._create(request)
        if parts == ["batches"] and method == "GET":
            return self._list(request.query)
        if parts[0] == "batches" and len(parts) >= 2:
            batch = self.batches.get(parts[1])
            if batch is None:
                return _error_reply(404, f"No such Batch object: {parts[1]}", param="id")
            if len(parts) == 2 and method == "GET":
                return self._json(batch.card())
            if parts[2:] == ["cancel"] and method == "POST":
                return self._cancel(batch)
        return _error_reply(404, f"Unknown request URL: {method} {request.path}",
                            code="unknown_url")

    @staticmethod
    def _json(payload: Any, status: int = 200) -> _Reply:
        from testing.fake_llm_server import _json_reply

        return _json_reply(status, payload)

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08x}"

    # ------------------------------------------------------------------ files

    def _upload(self, request: _HttpRequest) -> _Reply:
        from testing.fake_llm_server import _error_reply

        content_type = request.headers.get("content-type", "")
        if "multipart/form-data" not in content_type:
            return _error_reply(400, "Uploads must be multipart/form-data.")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + request.body)
        fields: dict[str, Any] = {}
        filename = "upload.jsonl"
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if part.get_filename():
                filename = part.get_filename()
            fields[str(name)] = part.get_payload(decode=True) or b""
        if "file" not in fields:
            return _error_reply(400, "Missing required parameter: 'file'.", param="file")
        purpose = fields.get("purpose", b"").decode()
        if purpose != "batch":
            return _error_reply(400, f"Invalid purpose {purpose!r} (this fake takes 'batch').",
                                param="purpose")
        if len(fields["file"]) > self.max_bytes:
            return _error_reply(400, f"File is larger than {self.max_bytes} bytes.",
                                param="file")
        file = _File(self._new_id("file-"), filename, purpose, fields["file"], int(time.time()))
        self.files[file.id] = file
        self.counts["files_uploaded"] += 1
        return self._json(file.card())

    def _store(self, name: str, data: bytes, purpose: str = "batch_output") -> str:
        file = _File(self._new_id("file-"), name, purpose, data, int(time.time()))
        self.files[file.id] = file
        return file.id

    # ------------------------------------------------------------------ batches

    def _create(self, request: _HttpRequest) -> _Reply:
        from testing.fake_llm_server import _error_reply

        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return _error_reply(400, "The body is not JSON.")
        file_id = body.get("input_file_id")
        if file_id not in self.files:
            return _error_reply(400, f"Input file {file_id!r} not found.",
                                param="input_file_id")
        if body.get("endpoint") not in _ENDPOINTS:
            return _error_reply(400, f"Unsupported endpoint {body.get('endpoint')!r}.",
                                param="endpoint")
        if body.get("completion_window") != "24h":
            return _error_reply(400, "completion_window must be '24h'.",
                                param="completion_window")
        batch = _Batch(self._new_id("batch_"), file_id, body["endpoint"], "24h",
                       body.get("metadata"), int(time.time()))
        self.batches[batch.id] = batch
        self.counts["batches_created"] += 1
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return self._json(batch.card())

    def _list(self, query: str) -> _Reply:
        params = dict(urllib.parse.parse_qsl(query))
        limit = max(1, min(100, int(params.get("limit", 20))))
        ordered = sorted(self.batches.values(), key=lambda b: b.id, reverse=True)  # newest first
        if params.get("after"):
            ids = [b.id for b in ordered]
            start = ids.index(params["after"]) + 1 if params["after"] in ids else len(ids)
            ordered = ordered[start:]
        page = ordered[:limit]
        return self._json({"object": "list", "data": [b.card() for b in page],
                           "first_id": page[0].id if page else None,
                           "last_id": page[-1].id if page else None,
                           "has_more": len(ordered) > limit})

    def _cancel(self, batch: _Batch) -> _Reply:
        from testing.fake_llm_server import _error_reply

        if batch.status in _TERMINAL:
            return _error_reply(409, f"Cannot cancel a batch with status {batch.status}.")
        batch.cancel_requested = True
        if batch.status != "cancelling":
            batch.status = "cancelling"
            batch.times["cancelling_at"] = int(time.time())
        return self._json(batch.card())

    def _validate(self, batch: _Batch) -> list[dict[str, Any]]:
        """The input's lines, or sets ``batch.errors`` (the batch then fails)."""
        data = self.files[batch.input_file_id].data
        errors: list[dict[str, Any]] = []
        lines: list[dict[str, Any]] = []
        seen: set[str] = set()
        for number, raw in enumerate(data.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                errors.append({"code": "invalid_json_line", "line": number,
                               "message": "This line is not parseable as valid JSON."})
                continue
            custom_id = line.get("custom_id") if isinstance(line, dict) else None
            if not isinstance(custom_id, str) or not custom_id:
                errors.append({"code": "missing_custom_id", "line": number,
                               "message": "Each line needs a custom_id."})
            elif custom_id in seen:
                errors.append({"code": "duplicate_custom_id", "line": number,
                               "message": f"The custom_id {custom_id!r} is not unique."})
            elif line.get("url") != batch.endpoint or line.get("method") != "POST":
                errors.append({"code": "mismatched_endpoint", "line": number,
                               "message": f"The url must be {batch.endpoint} with POST."})
            else:
                seen.add(custom_id)
                lines.append(line)
        if len(lines) > self.max_requests:
            errors.append({"code": "too_many_requests", "line": None,
                           "message": f"A batch holds at most {self.max_requests} requests; "
                                      f"this file has {len(lines)}."})
        if len(data) > self.max_bytes:
            errors.append({"code": "file_too_large", "line": None,
                           "message": f"A batch input file holds at most {self.max_bytes} "
                                      "bytes."})
        batch.errors = errors or None
        return lines

    async def _run(self, batch: _Batch) -> None:
        if self.validation_delay:
            await asyncio.sleep(self.validation_delay)
        lines = self._validate(batch)
        if batch.errors:
            batch.status, batch.times["failed_at"] = "failed", int(time.time())
            return
        if batch.cancel_requested:
            batch.status, batch.times["cancelled_at"] = "cancelled", int(time.time())
            return
        batch.status, batch.total = "in_progress", len(lines)
        started = time.monotonic()
        batch.times["in_progress_at"] = int(time.time())
        pause = self.completion_delay / max(1, len(lines))
        while self.paused and not batch.cancel_requested:
            await asyncio.sleep(0.02)
        output: list[str] = []
        failures: list[str] = []
        for index, line in enumerate(lines):
            late = self.expire_after is not None and time.monotonic() - started > \
                self.expire_after
            if batch.cancel_requested or late:
                if batch.cancel_requested:
                    code = "batch_cancelled"
                    message = "This request was not executed because the batch was cancelled."
                else:
                    code = "batch_expired"
                    message = ("This request could not be executed before the completion "
                               "window expired.")
                failures += [self._line(rest["custom_id"], None, {"code": code,
                                                                   "message": message})
                             for rest in lines[index:]]
                batch.status = "cancelled" if batch.cancel_requested else "expired"
                break
            if pause:
                await self._pause(pause, batch)
            began = time.perf_counter()
            status, body = await self._answer(line)
            self.counts["lines_processed"] += 1
            self.counts["busy_ms"] += int((time.perf_counter() - began) * 1000)
            await asyncio.sleep(0)  # let status requests in between lines
            if status == 200:
                batch.completed += 1
                output.append(self._line(line["custom_id"], {"status_code": 200,
                              "request_id": f"req_{next(self._ids):08x}", "body": body}))
            else:
                batch.failed += 1
                failures.append(self._line(line["custom_id"], {"status_code": status,
                                "request_id": f"req_{next(self._ids):08x}", "body": body}))
        else:
            batch.status, batch.times["finalizing_at"] = "finalizing", int(time.time())
        output += self._broken_lines(output)
        if output:
            batch.output_file_id = self._store(f"{batch.id}_output.jsonl",
                                               "".join(output).encode())
        if failures:
            batch.error_file_id = self._store(f"{batch.id}_error.jsonl",
                                              "".join(failures).encode())
        final = {"finalizing": "completed"}.get(batch.status, batch.status)
        batch.status = final
        batch.times[f"{final}_at"] = int(time.time())

    @staticmethod
    async def _pause(seconds: float, batch: _Batch) -> None:
        """Sleep, waking early when the batch is cancelled."""
        deadline = time.monotonic() + seconds
        while not batch.cancel_requested and time.monotonic() < deadline:
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    async def _answer(self, line: dict[str, Any]) -> tuple[int, Any]:
        """One line through the server's chat-completions path: (HTTP status, JSON body)."""
        from testing.fake_llm_server import RecordedRequest

        if self.fail_share and self._rng.random() < self.fail_share:
            return 500, {"error": {"message": "The server had an error processing this "
                                              "request (fake batch failure).",
                                   "type": "server_error", "param": None, "code": None}}
        record = RecordedRequest("POST", line["url"], {}, line.get("body"), time.time())
        reply = await self.server._chat(record, latency=False)
        # By attribute, not isinstance: run as `python -m testing.fake_llm_server` the server's
        # classes live in __main__, not in the module imported here.
        if not hasattr(reply, "status") or not hasattr(reply, "body"):  # timeout, disconnect
            return 500, {"error": {"message": "The request timed out.", "type": "server_error",
                                   "param": None, "code": "timeout"}}
        return reply.status, json.loads(reply.body)

    def _line(self, custom_id: str, response: dict[str, Any] | None,
              error: dict[str, Any] | None = None) -> str:
        return json.dumps({"id": f"batch_req_{next(self._ids):08x}", "custom_id": custom_id,
                           "response": response, "error": error}) + "\n"

    def _broken_lines(self, output: list[str]) -> list[str]:
        extra: list[str] = []
        for kind in self.output_faults:
            if kind == "unknown_custom_id":
                extra.append(self._line("xf-not-a-request-of-ours", {
                    "status_code": 200, "request_id": "req_x", "body": {}}))
            elif kind == "duplicate" and output:
                extra.append(output[0])
            elif kind == "malformed":
                extra.append('{"id": "batch_req_broken", "custom_id": \n')
        return extra
