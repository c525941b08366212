"""The LLM client: structured output from any OpenAI-compatible endpoint, with honest retries.

One call = one validated pydantic object. Built on ``openai.AsyncOpenAI`` (its own retries off)
and instructor's request shaping, parsing and re-ask messages for the configured mode
(``tools`` / ``json_schema`` / ``json`` / ``md_json``), driven by our own loop so every HTTP
attempt is seen, limited and counted. Two kinds of repetition, counted separately:

* **transport retries** (tenacity) — for 429, 408, 5xx, timeouts and dropped connections only:
  at most ``llm_max_retries`` after the first attempt, waiting ``min(cap, base × 2^(n-1))``
  scaled by a random factor in [0.5, 1] ("equal jitter": spread out, never near zero), or at
  least what the server's ``Retry-After`` / ``retry-after-ms`` asked (capped at
  ``llm_retry_after_max``). 400/401/403/404 fail at once (see :mod:`extraction.llm.errors`).
* **re-asks** — the server answered but the output is not valid (malformed or truncated JSON,
  wrong types, a category not in the list): the answer and the validation error go back to
  the model, at most ``llm_max_reasks`` times; a truncated answer is re-asked with twice the
  ``max_tokens``. Each re-ask is a new request with its own transport retries.

Why not instructor's own retry loop (``max_retries`` on a patched client, 1.17): it retries
only validation errors and hands transport errors back wrapped in ``InstructorRetryException``
(so the SDK's status, headers and Retry-After are one level down), raises
``IncompleteOutputException`` on a truncated answer instead of re-asking, and cannot put a
limiter around each HTTP attempt. Its building blocks — ``handle_response_model`` (request
shaping per mode),
``process_response_async`` (parsing) and ``handle_reask_kwargs`` (the re-ask messages) — are
used unchanged, so the wire format per mode is instructor's.

Prompt tokens served from the server's prompt cache are counted apart (``tokens_cached``)
when the server reports them in ``usage.prompt_tokens_details.cached_tokens``.

Every request passes through ``limiter`` (entered around each HTTP attempt, never around a
backoff sleep), so a run can cap in-flight calls and share a rate limit. Usage (prompt and
completion tokens) is summed over every request that returned, re-asks included, and priced
from the price table (:mod:`extraction.llm.prices`; cached prompt tokens at the cached rate)
when the model has an entry.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import openai
from instructor import Mode, OpenAISchema, openai_schema
from instructor.core.exceptions import IncompleteOutputException
from instructor.processing.response import (
    handle_reask_kwargs,
    handle_response_model,
    process_response_async,
)
from pydantic import BaseModel
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from config.settings import InstructorMode, ModelPrice, Settings, get_settings
from extraction.errors import ConfigError, LLMError
from extraction.llm.errors import InvalidOutputError, classify, is_retryable, retry_after_seconds
from extraction.llm.prices import PriceTable, load_prices
from extraction.run.confidence import mean_token_probability

__all__ = ["INSTRUCTOR_MODES", "LLMClient", "LLMResult", "Limiter", "backoff_delay", "raw_json"]

log = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)
Limiter = Callable[[], contextlib.AbstractAsyncContextManager[Any]]


@functools.lru_cache(maxsize=1024)
def _schema_class(response_model: type[T]) -> type[T]:
    """``response_model`` with instructor's schema behaviour, made once per model.

    Given a plain pydantic model, instructor makes a new wrapper class on every call, so its
    own schema cache never hits and each call rebuilds the JSON schema: measured at about a
    third of the client's CPU per document at 10,000 documents. A class that already is an
    ``OpenAISchema`` is used as it is.
    """
    if issubclass(response_model, OpenAISchema):
        return response_model
    return openai_schema(response_model)

#: What each mode sends: ``tools`` → a forced tool call (``tool_choice`` names the function);
#: ``json_schema`` → ``response_format: json_schema``; ``json`` → ``response_format:
#: json_object`` + the schema in the system message; ``md_json`` → plain text asked for a
#: ```json block + the schema in the system message (works anywhere, constrains nothing).
#: Which one a server takes (``extractflow llm check --all-modes`` tells for yours): OpenAI and
#: Azure OpenAI all four; vLLM all four (tools via named tool_choice, no parser flags needed);
#: llama-cpp-python's server tools only (measured: json_schema → HTTP 500); llama.cpp's
#: llama-server json_schema, tools with ``--jinja``; Ollama tools for tool-trained models, its
#: json_schema support differs between versions — check.
INSTRUCTOR_MODES: dict[str, Mode] = {
    "tools": Mode.TOOLS,
    "json_schema": Mode.JSON_SCHEMA,
    "json": Mode.JSON,
    "md_json": Mode.MD_JSON,
}
_MAX_TOKENS_CAP = 16384
_PARSE_ERRORS = (ValueError, AssertionError, IncompleteOutputException)


@dataclass
class LLMResult(Generic[T]):
    """A validated answer and what it cost.

    ``attempts`` counts every HTTP request (first tries, transport retries and re-asks);
    ``latency_ms`` is the wall time of the whole call, retries and waits included.
    """

    output: T
    raw_text: str
    model: str
    attempts: int
    reasks: int
    tokens_in: int
    tokens_out: int
    cost_usd: float | None
    latency_ms: float
    token_probability: float | None = None
    retry_waits: list[float] = field(default_factory=list)
    #: Prompt tokens the server took from its prompt cache (part of ``tokens_in``), when it
    #: says so in ``usage.prompt_tokens_details.cached_tokens`` (OpenAI, vLLM, llama.cpp).
    tokens_cached: int = 0
    #: The first answer came through the provider's Batch API (priced at its batch rate);
    #: re-asks after it, if any, were synchronous.
    batch: bool = False


@dataclass
class _Tally:
    attempts: int = 0
    reasks: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    tokens_cached: int = 0
    waits: list[float] = field(default_factory=list)


def cached_tokens(usage: Any) -> int:
    """``usage.prompt_tokens_details.cached_tokens``, 0 when the server does not report it."""
    details = getattr(usage, "prompt_tokens_details", None)
    if isinstance(details, dict):
        return int(details.get("cached_tokens") or 0)
    return int(getattr(details, "cached_tokens", 0) or 0)


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Wait before retry number ``attempt`` (1-based): equal jitter on a capped exponential.

    The result lies in ``[d / 2, d]`` with ``d = min(cap, base × 2^(attempt-1))``.
    """
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return ceiling * (0.5 + 0.5 * (rng or random).random())


def _completion_text(completion: Any) -> str:
    """The raw answer: the tool call's arguments, else the message content."""
    try:
        message = completion.choices[0].message
    except (AttributeError, IndexError):
        return ""
    calls = getattr(message, "tool_calls", None) or []
    if calls:
        arguments = calls[0].function.arguments
        return arguments if isinstance(arguments, str) else json.dumps(arguments)
    return message.content or ""


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def raw_json(text: str) -> Any:
    """The JSON value in a raw answer (bare, fenced in ```json, or the outermost braces)."""
    candidates = [text]
    candidates += [m.group(1) for m in _FENCE.finditer(text)]
    first, last = text.find("{"), text.rfind("}")
    if 0 <= first < last:
        candidates.append(text[first:last + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except (ValueError, TypeError):
            continue
    return None


def _token_probability(completion: Any) -> float | None:
    try:
        content = completion.choices[0].logprobs.content
    except (AttributeError, IndexError):
        return None
    if not content:
        return None
    return mean_token_probability(t.logprob for t in content)


class LLMClient:
    """Structured-output calls against one OpenAI-compatible endpoint.

    Build it with :meth:`from_settings`; close it with :meth:`aclose` in the event loop that
    used it (its HTTP pool belongs to that loop).
    """

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        *,
        model: str,
        mode: InstructorMode = "tools",
        max_retries: int = 3,
        max_reasks: int = 1,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        retry_after_max: float = 60.0,
        request_logprobs: bool = False,
        prices: PriceTable | Mapping[str, ModelPrice] | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        if mode not in INSTRUCTOR_MODES:
            raise ConfigError(f"unknown instructor mode {mode!r}; use one of "
                              f"{', '.join(INSTRUCTOR_MODES)}", field="llm_instructor_mode")
        self._client = client
        self.model = model
        self.mode_name = mode
        self.mode = INSTRUCTOR_MODES[mode]
        self.max_retries = max_retries
        self.max_reasks = max_reasks
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self.request_logprobs = request_logprobs
        self.prices = prices if isinstance(prices, PriceTable) \
            else PriceTable.from_settings_prices(prices or {})
        self._limiter: Limiter = limiter or contextlib.nullcontext
        self._attached: list[LLMClient] = []

    @property
    def limiter(self) -> Limiter:
        """What every HTTP attempt enters (shared with clients made for the same run)."""
        return self._limiter

    def attach(self, other: LLMClient) -> None:
        """Close ``other`` with this client (a challenger model's client on its own endpoint)."""
        self._attached.append(other)

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        *,
        limiter: Limiter | None = None,
        base_url: str | None = None,
        model: str | None = None,
    ) -> LLMClient:
        """A client for the configured endpoint (``EXTRACTFLOW_LLM_*``), SDK retries off.

        Raises:
            ConfigError: a base URL that is not http(s).
        """
        settings = settings or get_settings()
        url = base_url or settings.llm_base_url
        if url is not None and not re.match(r"^https?://[^/\s]+", url):
            raise ConfigError(f"the LLM base URL {url!r} is not an http(s) URL, e.g. "
                              "http://localhost:11434/v1", field="llm_base_url")
        client = openai.AsyncOpenAI(
            base_url=url,
            api_key=settings.llm_api_key.get_secret_value() or "not-needed",
            timeout=settings.llm_timeout,
            max_retries=0,
        )
        return cls(
            client,
            model=model or settings.llm_model,
            mode=settings.llm_instructor_mode,
            max_retries=settings.llm_max_retries,
            max_reasks=settings.llm_max_reasks,
            backoff_base=settings.llm_backoff_base,
            backoff_max=settings.llm_backoff_max,
            retry_after_max=settings.llm_retry_after_max,
            request_logprobs=settings.llm_request_logprobs,
            prices=load_prices(settings),
            limiter=limiter,
        )

    @property
    def base_url(self) -> str:
        """The endpoint for messages and reports, secrets masked (it may carry a key)."""
        from config.settings import mask_url

        return mask_url(str(self._client.base_url))

    # ------------------------------------------------------------------ requests

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        delay = backoff_delay(state.attempt_number, self.backoff_base, self.backoff_max)
        asked = retry_after_seconds(exc) if exc is not None else None
        if asked is not None:
            delay = max(delay, min(asked, self.retry_after_max))
        return delay

    async def _request(self, create: Callable[[], Any], tally: _Tally, model: str) -> Any:
        """One logical request with bounded transport retries; every attempt is counted."""

        def before_sleep(state: RetryCallState) -> None:
            wait = state.next_action.sleep if state.next_action is not None else 0.0
            tally.waits.append(wait)
            exc = state.outcome.exception() if state.outcome is not None else None
            log.warning("LLM request failed (%s); retry %d/%d in %.2f s",
                        classify(exc, attempts=tally.attempts).detail if exc else "?",
                        state.attempt_number, self.max_retries, wait)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(is_retryable),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    tally.attempts += 1
                    async with self._limiter():
                        return await create()
        except openai.OpenAIError as exc:
            raise self._failed(classify(exc, attempts=tally.attempts, model=model,
                                        base_url=self.base_url), tally) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")

    @staticmethod
    def _failed(error: LLMError, tally: _Tally) -> LLMError:
        """``error`` with the call's counters, so a failed call's cost is still accounted."""
        error.attempts = tally.attempts
        error.extra.update(attempts=tally.attempts, reasks=tally.reasks,
                           tokens_in=tally.tokens_in, tokens_out=tally.tokens_out,
                           tokens_cached=tally.tokens_cached)
        return error

    def cost(self, model: str, tokens_in: int, tokens_out: int, tokens_cached: int = 0,
             *, batch: bool = False) -> float | None:
        """US dollars for the tokens (cached ones at the cached rate; ``batch``: at the Batch
        API's discount), if the price table knows ``model``."""
        return self.prices.cost(model, tokens_in, tokens_out, tokens_cached=tokens_cached,
                                batch=batch)

    def _call_cost(self, model: str, tally: _Tally, batch_tokens: tuple[int, int, int]
                   ) -> float | None:
        """A call's cost: the answer a provider batch gave at the batch price, the re-asks
        sent over HTTP after it (and every synchronous call) at the synchronous price."""
        b_in, b_out, b_cached = batch_tokens
        sync = self.cost(model, tally.tokens_in - b_in, tally.tokens_out - b_out,
                         tally.tokens_cached - b_cached)
        if not b_in and not b_out:
            return sync
        batch = self.cost(model, b_in, b_out, b_cached, batch=True)
        return None if sync is None or batch is None else sync + batch

    async def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        response_model: type[T],
        *,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        model: str | None = None,
        seed: int | None = None,
        answered: Any | None = None,
        max_reasks: int | None = None,
        prepared: tuple[Any, dict[str, Any]] | None = None,
    ) -> LLMResult[T]:
        """Ask for ``response_model``; retry transport failures, re-ask invalid output.

        ``seed`` is sent as the request's ``seed`` (servers that honour it sample repeatably;
        second opinions give each sample its own).
        ``answered`` is a completion already obtained for this very request (a line of a
        provider batch, see :mod:`extraction.run.batch`): it is parsed and validated as if
        it had just come back, and only re-asks (at most ``max_reasks``, default the
        client's) go over HTTP. ``prepared`` is what :meth:`prepare` returned for this call,
        when the caller already has it (instructor's request shaping is not free).

        Raises:
            LLMError: after the retries (``attempts`` set; ``extra["fatal"]`` for failures
                that would hit every call; :class:`~extraction.llm.errors.ContextLengthError`
                for an oversized prompt); :class:`~extraction.llm.errors.InvalidOutputError`
                after the re-asks. ``extra`` carries the tokens spent.
        """
        model_name = model or self.model
        prepared, kwargs = prepared or self.prepare(
            messages, response_model, temperature=temperature, max_tokens=max_tokens,
            model=model_name, seed=seed)
        kwargs = dict(kwargs)
        reask_limit = self.max_reasks if max_reasks is None else max_reasks
        batch_answer = answered is not None
        tally = _Tally()
        batch_tokens = (0, 0, 0)  # of the tally's tokens, those of an answer from a batch
        started = time.perf_counter()
        while True:
            from_batch = answered is not None
            if answered is not None:
                completion, answered = answered, None
                tally.attempts += 1
            else:
                completion = await self._request(
                    lambda sent=kwargs: self._client.chat.completions.create(**sent), tally,
                    model_name)
            usage = getattr(completion, "usage", None)
            tally.tokens_in += int(getattr(usage, "prompt_tokens", 0) or 0)
            tally.tokens_out += int(getattr(usage, "completion_tokens", 0) or 0)
            tally.tokens_cached += cached_tokens(usage)
            if from_batch:
                batch_tokens = (tally.tokens_in, tally.tokens_out, tally.tokens_cached)
            try:
                output = await process_response_async(
                    completion, response_model=prepared, mode=self.mode, strict=False)
            except _PARSE_ERRORS as exc:
                if tally.reasks >= reask_limit:
                    raise self._failed(InvalidOutputError(
                        f"the model's answer was not valid structured output after "
                        f"{tally.reasks} re-ask{'s' if tally.reasks != 1 else ''} "
                        f"({tally.attempts} attempts, mode {self.mode_name}): "
                        f"{_short(exc)}", reasks=tally.reasks), tally) from exc
                tally.reasks += 1
                log.info("invalid structured output (%s); re-ask %d/%d", _short(exc),
                         tally.reasks, reask_limit)
                kwargs = handle_reask_kwargs(kwargs, self.mode, completion, exc)
                if isinstance(exc, IncompleteOutputException):
                    kwargs["max_tokens"] = min(_MAX_TOKENS_CAP,
                                               2 * int(kwargs.get("max_tokens") or 1024))
                continue
            return LLMResult(
                output=output,
                raw_text=_completion_text(completion),
                model=model_name,
                attempts=tally.attempts,
                reasks=tally.reasks,
                tokens_in=tally.tokens_in,
                tokens_out=tally.tokens_out,
                cost_usd=self._call_cost(model_name, tally, batch_tokens),
                latency_ms=(time.perf_counter() - started) * 1000,
                token_probability=_token_probability(completion),
                retry_waits=tally.waits,
                tokens_cached=tally.tokens_cached,
                batch=batch_answer,
            )

    def prepare(
        self,
        messages: Sequence[Mapping[str, Any]],
        response_model: type[T],
        *,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        model: str | None = None,
        seed: int | None = None,
    ) -> tuple[Any, dict[str, Any]]:
        """``(prepared model, request body)`` as instructor shapes it for the client's mode.

        The body is what :meth:`complete` sends to ``/chat/completions``, and what a batch
        line carries, so both ways ask exactly the same.
        """
        request: dict[str, Any] = {
            "model": model or self.model,
            "messages": [dict(m) for m in messages],
            "temperature": temperature,
        }
        if max_tokens:
            request["max_tokens"] = max_tokens
        if self.request_logprobs:
            request["logprobs"] = True
        if seed is not None:
            request["seed"] = seed
        return handle_response_model(_schema_class(response_model), mode=self.mode, **request)

    async def complete_structured(
        self,
        messages: Sequence[Mapping[str, Any]],
        response_model: type[T],
        *,
        temperature: float = 0.0,
        max_tokens: int | None = None,
    ) -> T:
        """Just the validated object (for callers that do not account usage)."""
        result = await self.complete(messages, response_model, temperature=temperature,
                                     max_tokens=max_tokens)
        return result.output

    async def list_models(self) -> list[str]:
        """The model ids the server lists (``GET /models``), one attempt.

        Raises:
            LLMError: the request failed (classified like a chat request).
        """
        tally = _Tally(attempts=1)
        try:
            page = await self._client.models.list()
        except openai.OpenAIError as exc:
            raise self._failed(classify(exc, attempts=1, base_url=self.base_url), tally) \
                from exc
        return [m.id for m in page.data]

    async def aclose(self) -> None:
        """Close the HTTP pool (and those of attached clients)."""
        await self._client.close()
        for other in self._attached:
            await other.aclose()


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
