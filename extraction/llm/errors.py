"""What went wrong with an LLM request, in words a user can act on, and whether to retry.

Classes of failure (the LLM client and the extractor act on them):

* **retryable** — 429, 408, 5xx, timeouts, dropped connections: the same request may succeed
  later, so the client retries it (bounded, with backoff, honouring ``Retry-After``);
* **context too long** — a 400 saying the prompt exceeds the model's window:
  :class:`ContextLengthError`, so the extractor can split the document and try again;
* **fatal** — 401/403 (credentials), 404 (unknown model or wrong base URL), and a 400 that
  rejects the structured-output feature itself (tools / response_format) or logprobs, or a 5xx
  that is a request validation error in disguise (llama-cpp-python's server answers an
  unsupported ``response_format`` with HTTP 500): every document would fail the same way, so
  the error is built with ``fatal=True`` (:func:`extraction.errors.is_fatal` says so) and the
  run stops;
* **invalid output** — the model answered, but not with valid structured output even after
  the bounded re-asks: :class:`InvalidOutputError`, confined to that call;
* anything else (another 400, 409, 422 …) fails the call at once, not fatal.

Every message names the HTTP status, the provider's own message and the attempt count.
"""

from __future__ import annotations

import email.utils
import os
import re
import time
from typing import Any

import openai

from extraction.errors import LLMError

__all__ = [
    "MODE_HINT",
    "ContextLengthError",
    "InvalidOutputError",
    "classify",
    "connection_cause",
    "context_window_from",
    "is_retryable",
    "provider_message",
    "retry_after_seconds",
]

RETRYABLE_STATUS = frozenset({408, 429}) | frozenset(range(500, 600))
MODE_HINT = ("set EXTRACTFLOW_LLM_INSTRUCTOR_MODE to another mode (tools, json_schema, json, "
             "md_json; `extractflow llm check --all-modes` shows which ones this server "
             "supports)")

_CONTEXT_RE = re.compile(
    r"context[_ ]length|context window|maximum context|context size|too many tokens|"
    r"prompt is too long|exceeds? the (?:available )?context|input is too long|"
    r"reduce the length of the messages",
    re.IGNORECASE,
)
_WINDOW_RES = (
    re.compile(r"maximum context length is (\d+)", re.IGNORECASE),
    re.compile(r"context (?:size|window|length)[^\d]{0,40}?(\d{3,})", re.IGNORECASE),
    re.compile(r"n_ctx[^\d]{0,10}(\d{3,})", re.IGNORECASE),
)
_FEATURE_RE = re.compile(
    r"\btools?\b|tool_choice|function[_ ]call|\bfunctions?\b|response_format|json_schema|"
    r"json_object|structured output|\bgrammar\b|guided",
    re.IGNORECASE,
)

#: A 5xx that is really a rejected request: llama-cpp-python answers HTTP 500 with its request
#: validation errors (e.g. ``'loc': ('body', 'response_format', 'type')`` for json_schema).
_REQUEST_REJECTED_RE = re.compile(
    r"'body',|\bresponse_format\b|\bjson_schema\b|\btool_choice\b", re.IGNORECASE)


class ContextLengthError(LLMError):
    """The prompt does not fit the model's context window (split the document and retry)."""

    type = "llm-context-length"
    title = "Document too long for the model"

    def __init__(self, detail: str, *, window: int | None = None, **kwargs: Any) -> None:
        extra = dict(kwargs.pop("extra", None) or {})
        if window is not None:
            extra["context_window"] = window
        super().__init__(detail, extra=extra, **kwargs)
        self.window = window


class InvalidOutputError(LLMError):
    """The model's answer was not valid structured output, even after the re-asks."""

    type = "llm-invalid-output"
    title = "Invalid answer from the LLM"

    def __init__(self, detail: str, *, reasks: int = 0, **kwargs: Any) -> None:
        extra = dict(kwargs.pop("extra", None) or {})
        extra["reasks"] = reasks
        super().__init__(detail, extra=extra, **kwargs)
        self.reasks = reasks


def provider_message(exc: BaseException) -> str:
    """The provider's own error message (from the JSON error body when there is one)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        message = body.get("message") or body.get("detail") or body.get("error")
        if isinstance(message, dict):
            message = message.get("message")
        if message:
            return str(message).strip()
    if isinstance(body, str) and body.strip():
        return body.strip()[:500]
    message = getattr(exc, "message", None) or str(exc)
    return str(message).strip()


def is_retryable(exc: BaseException) -> bool:
    """Whether the same request may succeed later (429/408/5xx, timeout, connection)."""
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(exc, openai.APIStatusError):
        if exc.status_code >= 500 and _REQUEST_REJECTED_RE.search(provider_message(exc)):
            return False
        return exc.status_code in RETRYABLE_STATUS
    return False


def retry_after_seconds(exc: BaseException) -> float | None:
    """The wait the server asked for: ``retry-after-ms``, ``Retry-After`` seconds or HTTP date."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(0.0, email.utils.mktime_tz(parsed) - time.time())


def context_window_from(message: str) -> int | None:
    """The model's context window if the provider's message states it."""
    for pattern in _WINDOW_RES:
        match = pattern.search(message)
        if match:
            return int(match.group(1))
    return None


def connection_cause(exc: BaseException) -> str:
    """The lowest-level reason of a connection failure ("Connection refused", a DNS error…)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    for error in reversed(seen):
        if isinstance(error, OSError) and error.errno:
            return f"{os.strerror(error.errno)} ({error})"
        if isinstance(error, OSError) and error.strerror:
            return error.strerror
    for error in reversed(seen[1:]):
        if str(error):
            return str(error)
    return ""


def _is_context_length(exc: openai.APIStatusError, message: str) -> bool:
    return exc.code == "context_length_exceeded" or bool(_CONTEXT_RE.search(message))


def _where(exc: BaseException) -> str:
    request = getattr(exc, "request", None)
    url = getattr(request, "url", None)
    return f" ({request.method} {url})" if url is not None else ""


def classify(
    exc: BaseException, *, attempts: int, model: str | None = None,
    base_url: str | None = None,
) -> LLMError:
    """An :class:`LLMError` describing ``exc`` after ``attempts`` attempts (not raised here)."""
    tries = f"after {attempts} attempt{'s' if attempts != 1 else ''}"
    kwargs: dict[str, Any] = {"attempts": attempts}
    if isinstance(exc, openai.APITimeoutError):
        return LLMError(f"the request timed out {tries}{_where(exc)}; the server may be "
                        "overloaded, or raise EXTRACTFLOW_LLM_TIMEOUT", retryable=True, **kwargs)
    if isinstance(exc, openai.APIConnectionError):
        cause = connection_cause(exc)
        reason = f": {cause}" if cause else ""
        return LLMError(f"cannot reach the LLM server{_where(exc)} {tries}{reason}; check "
                        "EXTRACTFLOW_LLM_BASE_URL and that the server is running",
                        retryable=True, extra={"cause": cause, "unreachable": True}, **kwargs)
    if not isinstance(exc, openai.APIStatusError):
        return LLMError(f"{type(exc).__name__}: {exc} ({tries})", **kwargs)
    status = exc.status_code
    message = provider_message(exc)
    head = f"HTTP {status} from the LLM server: {message}"
    kwargs["status_code"] = status
    kwargs["extra"] = {"provider_message": message}
    if status in (401, 403):
        return LLMError(f"{head} — the server rejected the credentials; check "
                        "EXTRACTFLOW_LLM_API_KEY (and the key's access to the model) "
                        f"({tries})", fatal=True, **kwargs)
    if status == 404:
        if exc.code == "model_not_found" or (model and model in message) or \
                re.search(r"\bmodel\b", message, re.IGNORECASE):
            hint = (f"the model {model!r} is not served there; check EXTRACTFLOW_LLM_MODEL "
                    "(`extractflow llm check` lists the server's models)")
        else:
            hint = ("the endpoint path does not exist; check EXTRACTFLOW_LLM_BASE_URL "
                    f"({base_url or 'the OpenAI default'}) — OpenAI-compatible servers usually "
                    "end in /v1, e.g. http://localhost:11434/v1")
        return LLMError(f"{head} — {hint} ({tries})", fatal=True, **kwargs)
    if status == 400 and _is_context_length(exc, message):
        return ContextLengthError(f"{head} ({tries})", window=context_window_from(message),
                                  **kwargs)
    if status in (400, 422) and "logprob" in message.lower():
        return LLMError(f"{head} — this server does not return logprobs; set "
                        f"EXTRACTFLOW_LLM_REQUEST_LOGPROBS=false ({tries})",
                        fatal=True, **kwargs)
    if status >= 500 and _REQUEST_REJECTED_RE.search(message):
        return LLMError(f"{head} — the server rejected the request format (a 5xx that will "
                        f"not go away on retry); {MODE_HINT} ({tries})",
                        fatal=True, **kwargs)
    if status in (400, 422) and _FEATURE_RE.search(message):
        return LLMError(f"{head} — the server seems not to support this kind of structured "
                        f"output; {MODE_HINT} ({tries})", fatal=True, **kwargs)
    retryable = status in RETRYABLE_STATUS
    return LLMError(f"{head} ({tries})", retryable=retryable, **kwargs)
