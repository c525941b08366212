"""The JSONL of a batch: request lines out, output and error lines back, checked.

A request line is ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}``
with the body exactly as the synchronous client would send it. The ``custom_id`` names the
job, the document and the call: ``xf-<job id, 8 hex>-<document id, 32 hex>-<call key>``
(61 characters; Anthropic's batches take at most 64), where the call key is a hash of the request body — the extractor's calls of one document
(per variable, per chunk of a long document) differ in their messages, so the key tells them
apart and is found again by building the same request at collection.

Output and error lines are ``{"id", "custom_id", "response": {"status_code", "body"},
"error"}``. :func:`read_results` keeps, per ``custom_id``, the first answer with status 200
(else the first failure) and reports what does not fit: a line that is not JSON, a line
repeated.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from extraction.llm.batch_api import ENDPOINT

__all__ = ["Answer", "Results", "call_key", "custom_id", "parse_custom_id", "read_results",
           "request_line"]

_PREFIX = "xf"


def call_key(body: dict[str, Any]) -> str:
    """A short, stable hash of one request body (16 hex digits)."""
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def custom_id(job_id: uuid.UUID, document_id: uuid.UUID, key: str) -> str:
    """The line's id: job, document and call (see the module docstring)."""
    return f"{_PREFIX}-{job_id.hex[:8]}-{document_id.hex}-{key}"


def parse_custom_id(value: str) -> tuple[str, uuid.UUID, str] | None:
    """``(job prefix, document id, call key)``, or None for an id that is not ours."""
    parts = value.split("-")
    if len(parts) != 4 or parts[0] != _PREFIX:
        return None
    try:
        return parts[1], uuid.UUID(hex=parts[2]), parts[3]
    except ValueError:
        return None


def request_line(line_id: str, body: dict[str, Any]) -> str:
    """One JSONL request line (with its newline)."""
    return json.dumps({"custom_id": line_id, "method": "POST", "url": ENDPOINT, "body": body},
                      ensure_ascii=False, default=str) + "\n"


@dataclass
class Answer:
    """What the batch said for one request: a completion body, or why there is none."""

    body: dict[str, Any] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.body is not None


@dataclass
class Results:
    """A batch's answers by ``custom_id``, the problems met reading them, and their tokens."""

    answers: dict[str, Answer] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cached: int = 0


def _error_text(line: dict[str, Any]) -> str:
    error = line.get("error") or {}
    if isinstance(error, dict) and (error.get("code") or error.get("message")):
        return f"{error.get('code') or 'error'}: {error.get('message') or ''}".strip()
    response = line.get("response") or {}
    body = response.get("body") if isinstance(response, dict) else None
    message = ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = str(body["error"].get("message") or "")
    status = response.get("status_code") if isinstance(response, dict) else None
    return f"HTTP {status}: {message}".strip() if status else (message or "no answer")


def read_results(output: bytes | None, errors: bytes | None) -> Results:
    """Read the output and error files of one batch.

    Args:
        output: The output file (answered lines), if the batch has one.
        errors: The error file (failed, expired or cancelled lines), if any.

    Lines that are not JSON or repeat a ``custom_id`` are reported in ``problems``; whether
    an id was asked for is for the caller to tell (the replay knows what it asked).
    """
    results = Results()
    seen: set[str] = set()
    for name, data in (("output", output), ("error", errors)):
        for number, raw in enumerate((data or b"").splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
                line_id = line["custom_id"]
            except (ValueError, TypeError, KeyError):
                results.problems.append(f"{name} file line {number} is not a valid result "
                                        f"line: {raw[:120].decode('utf-8', 'replace')!r}")
                continue
            if line_id in seen:
                results.problems.append(f"{name} file line {number} repeats custom_id "
                                        f"{line_id!r}: the first answer is kept")
                continue
            response = line.get("response") or {}
            body = response.get("body") if isinstance(response, dict) else None
            if isinstance(response, dict) and response.get("status_code") == 200 \
                    and isinstance(body, dict) and body.get("choices"):
                seen.add(line_id)
                results.answers[line_id] = Answer(body=body)
                usage = body.get("usage") or {}
                results.tokens_in += int(usage.get("prompt_tokens") or 0)
                results.tokens_out += int(usage.get("completion_tokens") or 0)
                details = usage.get("prompt_tokens_details") or {}
                results.tokens_cached += int(details.get("cached_tokens") or 0)
            else:
                seen.add(line_id)
                results.answers[line_id] = Answer(error=_error_text(line))
    return results
