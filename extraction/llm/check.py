"""Check an LLM endpoint before a run: can we reach it, and does structured output round-trip?

Two steps, each explained in plain words when it fails:

1. **connectivity** — ``GET {base_url}/models``: a refused connection, a rejected key (401/403)
   or a timeout stop here. A 404 does not (some servers have no ``/models``); the model list,
   when there is one, is used to say "model missing" precisely.
2. **round trip** — a tiny extraction ("The answer is 42." → ``{"value": 42}``) through the
   same client, response model and instructor mode a run uses. Failures name the cause: wrong
   base URL (404 on the path), unknown model, a server that rejects or ignores tools /
   ``response_format`` (→ another ``EXTRACTFLOW_LLM_INSTRUCTOR_MODE``), or output that is not
   valid JSON for the schema.

``check_endpoint`` tries the configured mode, or every mode with ``all_modes`` (to find the one
a server supports). It returns a :class:`CheckReport`; the CLI renders it and exits non-zero
when the configured mode fails.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from config.settings import Settings
from extraction.errors import LLMError, is_fatal
from extraction.llm.client import INSTRUCTOR_MODES, LLMClient
from extraction.llm.errors import MODE_HINT, ContextLengthError, InvalidOutputError
from extraction.llm.response_models import answer_model
from extraction.models import VariableType
from extraction.run.results import VariableInfo

__all__ = ["EXPECTED_VALUE", "ROUND_TRIP_TEXT", "CheckReport", "ModeCheck", "check_endpoint"]

ROUND_TRIP_TEXT = "Internal memo. The answer is 42. Nothing else matters."
EXPECTED_VALUE = 42.0
_VARIABLE = VariableInfo(
    id=uuid.UUID(int=42), name="answer", label="The answer", type=VariableType.NUMBER,
    instructions="The number the memo calls the answer.",
)
_SYSTEM = ("You extract data from documents. Answer only from the document between <document> "
           "and </document>; give an exact evidence quote and a confidence from 0 to 1.")
_USER = ("### Variable `answer`: The answer\nType: NUMBER (a number)\nAnswer with a plain JSON "
         "number.\n\nAnswer the variable above from the document below.\n<document>\n"
         f"{ROUND_TRIP_TEXT}\n</document>")


@dataclass
class ModeCheck:
    """The round trip in one instructor mode."""

    mode: str
    ok: bool
    latency_ms: float | None = None
    value: Any = None
    evidence: str | None = None
    attempts: int = 0
    problem: str | None = None
    hint: str | None = None


@dataclass
class CheckReport:
    """What ``llm check`` found out about the endpoint."""

    base_url: str
    model: str
    mode: str
    connected: bool = False
    models: list[str] | None = None
    models_problem: str | None = None
    checks: list[ModeCheck] = field(default_factory=list)
    step: str = "connectivity"
    problem: str | None = None
    hint: str | None = None

    @property
    def ok(self) -> bool:
        configured = next((c for c in self.checks if c.mode == self.mode), None)
        return self.problem is None and configured is not None and configured.ok

    @property
    def working_modes(self) -> list[str]:
        return [c.mode for c in self.checks if c.ok]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["working_modes"] = self.working_modes
        return data


def _model_listed(report: CheckReport) -> bool | None:
    if report.models is None:
        return None
    return report.model in report.models


def _models_text(report: CheckReport) -> str:
    if not report.models:
        return ""
    shown = ", ".join(report.models[:10]) + (" …" if len(report.models) > 10 else "")
    return f" The server lists: {shown}."


def _explain(error: LLMError, report: CheckReport, mode: str) -> tuple[str, str]:
    """(what went wrong, what to do) for a failed request, in plain words."""
    status = error.status_code
    detail = error.detail
    said = error.extra.get("provider_message") or detail
    endpoint = report.base_url.rstrip("/")
    if status in (401, 403):
        return (f"the server rejected the API key (HTTP {status}: {said})",
                "set EXTRACTFLOW_LLM_API_KEY to a valid key for this server")
    if status == 404:
        if _model_listed(report) is False or "model" in str(said).lower():
            return ((f"the model {report.model!r} is not available on the server (HTTP 404: "
                     f"{said}).{_models_text(report)}"),
                    "set EXTRACTFLOW_LLM_MODEL to one of the server's models")
        return ((f"{endpoint}/chat/completions does not exist (HTTP 404: {said}): the base "
                 "URL looks wrong"),
                ("set EXTRACTFLOW_LLM_BASE_URL to the server's OpenAI-compatible root, usually "
                 "ending in /v1 (Ollama: http://localhost:11434/v1, vLLM: http://HOST:8000/v1, "
                 "llama.cpp: http://HOST:8080/v1)"))
    if isinstance(error, ContextLengthError):
        return (f"the server says even the tiny check prompt is too long: {detail}",
                "the model's context window is misconfigured on the server")
    if isinstance(error, InvalidOutputError):
        return ((f"the server answered, but not with valid structured output in mode "
                 f"{mode!r}: {detail}"), MODE_HINT)
    if is_fatal(error):
        return detail, MODE_HINT
    if error.retryable and status is None:
        if "timed out" in detail:
            return (f"no answer from {endpoint} within the timeout",
                    "check that the server is not overloaded, or raise EXTRACTFLOW_LLM_TIMEOUT")
        cause = error.extra.get("cause") or "connection failed"
        return (f"cannot connect to {endpoint}: {cause}",
                ("check that the server is running and that EXTRACTFLOW_LLM_BASE_URL has the "
                 "right host and port"))
    return detail, "see the server's logs for the request"


async def _round_trip(client: LLMClient, report: CheckReport, mode: str) -> ModeCheck:
    started = time.perf_counter()
    try:
        result = await client.complete(
            [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": _USER}],
            answer_model(_VARIABLE), temperature=0.0, max_tokens=200)
    except LLMError as error:
        problem, hint = _explain(error, report, mode)
        return ModeCheck(mode, False, (time.perf_counter() - started) * 1000,
                         attempts=error.attempts or 0, problem=problem, hint=hint)
    answer = result.output
    check = ModeCheck(mode, True, round(result.latency_ms, 1), answer.value, answer.evidence,
                      attempts=result.attempts)
    if answer.value != EXPECTED_VALUE:
        check.hint = (f"structured output works, but the model answered {answer.value!r} "
                      f"instead of 42: a weak model, or a prompt it misunderstood")
    return check


async def check_endpoint(
    settings: Settings,
    *,
    all_modes: bool = False,
    base_url: str | None = None,
    model: str | None = None,
    mode: str | None = None,
) -> CheckReport:
    """Check connectivity and the structured-output round trip (see the module docstring).

    Transport retries are off and one re-ask is allowed, so a check answers quickly and a
    flaky server shows as flaky.

    Raises:
        ConfigError: an unusable base URL or mode in the settings.
    """
    configured_mode = mode or settings.llm_instructor_mode
    quick = settings.model_copy(update={"llm_max_retries": 0, "llm_max_reasks": 1,
                                        "llm_instructor_mode": configured_mode})
    client = LLMClient.from_settings(quick, base_url=base_url, model=model)
    report = CheckReport(base_url=client.base_url, model=client.model, mode=configured_mode)
    try:
        try:
            report.models = await client.list_models()
            report.connected = True
        except LLMError as error:
            if error.status_code == 404:
                report.connected = True
                report.models_problem = "the server has no GET /models (HTTP 404)"
            elif error.status_code is not None and error.status_code not in (401, 403):
                report.connected = True
                report.models_problem = error.detail
            else:
                report.problem, report.hint = _explain(error, report, configured_mode)
                return report
        report.step = "round_trip"
        modes = list(INSTRUCTOR_MODES) if all_modes else [configured_mode]
        if configured_mode in modes:
            modes.remove(configured_mode)
        modes.insert(0, configured_mode)
        for name in modes:
            mode_client = client if name == configured_mode else LLMClient.from_settings(
                quick.model_copy(update={"llm_instructor_mode": name}), base_url=base_url,
                model=model)
            try:
                report.checks.append(await _round_trip(mode_client, report, name))
            finally:
                if mode_client is not client:
                    await mode_client.aclose()
        first = report.checks[0]
        if not first.ok:
            report.problem, report.hint = first.problem, first.hint
            others = [c.mode for c in report.checks[1:] if c.ok]
            if others:
                report.hint = (f"mode{'s' if len(others) > 1 else ''} {', '.join(others)} "
                               f"work{'' if len(others) > 1 else 's'} on this server: set "
                               f"EXTRACTFLOW_LLM_INSTRUCTOR_MODE={others[0]}")
        return report
    finally:
        await client.aclose()
