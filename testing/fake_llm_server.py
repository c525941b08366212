"""A fake OpenAI-compatible chat-completions server over real HTTP, for tests and benchmarks.

Why: the design requires tests to talk to a real HTTP endpoint through the real ``openai`` SDK
(no monkeypatched client), so retries, timeouts, connection pooling and error mapping are the
SDK's own. This module is that endpoint: a small raw-asyncio HTTP/1.1 server (keep-alive, no
third-party dependency) that answers ``POST /v1/chat/completions`` and ``GET /v1/models``.

Two ways to run it:

* In a background thread, for unit tests (counters and recorded requests are plain attributes)::

      from testing.fake_llm_server import FakeLLMServer, ScriptedResponder
      import openai

      with FakeLLMServer(model="fake-model") as server:
          client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
          server.responder = ScriptedResponder().when("ACME", {"value": "ACME Corp"})
          server.fail_next(1, "429", retry_after=2)      # the next call gets a 429
          server.latency = (0.05, 0.1)                    # uniform latency per request
          ...
          assert server.max_in_flight <= 8

* In its own process, for benchmarks (the server does not compete for the client's GIL)::

      python -m testing.fake_llm_server --port 0 --latency 0.2     # prints http://127.0.0.1:PORT/v1

  or from Python: ``with FakeLLMProcess(latency=0.2) as server: server.base_url``; the same
  control methods (``fail_next``, ``fail_rate``, ``latency``, ``stats()``, ``reset()``) go over
  a small admin API under ``/_fake/``.

Answers come from a *responder*: ``responder(request: ChatRequest) -> dict | list | str | Answer``.
The server wraps the returned JSON in the shape the request asked for: a tool call
(``tools`` + ``tool_choice``), JSON in ``message.content`` (``response_format`` json_schema /
json_object) or plain text (optionally in a ```json fence, as instructor's MD_JSON asks). The
default :class:`SchemaResponder` builds a schema-valid answer from the request's JSON schema and
the document found between delimiters in the user message; :class:`ScriptedResponder` answers by
substring match on the prompt.

Pytest: conftest can register the fixtures with
``fake_llm = pytest.fixture(fake_llm_fixture)`` (function scope: a fresh server per test).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import http
import importlib
import inspect
import itertools
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self, TypeAlias

__all__ = [
    "FAULT_KINDS",
    "Answer",
    "ChatRequest",
    "FakeLLMProcess",
    "FakeLLMServer",
    "Fault",
    "RecordedRequest",
    "Responder",
    "SchemaResponder",
    "ScriptedResponder",
    "fake_llm_fixture",
    "fake_llm_process_fixture",
]

Latency: TypeAlias = float | tuple[float, float]
JSONValue: TypeAlias = Any

#: Fault kinds understood by ``fail_next`` / ``fail_when`` / ``fail_rate``.
FAULT_KINDS: tuple[str, ...] = (
    "429",
    "500",
    "503",
    "timeout",
    "disconnect",
    "malformed_json",
    "truncated_json",
    "schema_violation",
    "400_context_length",
    "401",
)
#: Faults answered at once, before latency: gateways reject these without running the model.
_IMMEDIATE_FAULTS = frozenset({"429", "401", "400_context_length"})
#: Faults that replace the answer's text but still return HTTP 200.
_CONTENT_FAULTS = frozenset({"malformed_json", "truncated_json", "schema_violation"})

_MAX_BODY_BYTES = 64 * 1024 * 1024
_MAX_HEAD_BYTES = 1024 * 1024
_MAX_LOGPROB_TOKENS = 512
_ADMIN_PREFIX = "/_fake/"
_REPO_ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# The parsed request handed to responders
# --------------------------------------------------------------------------------------------

#: Delimiters tried, in order, to find the document inside the user message. Generic on
#: purpose: the prompt module decides the real delimiter, the fake only needs to find it.
DOCUMENT_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"<document\b[^>]*>(.*?)</document\s*>", re.DOTALL | re.IGNORECASE),
    re.compile(r"<doc\b[^>]*>(.*?)</doc\s*>", re.DOTALL | re.IGNORECASE),
    re.compile(r"BEGIN DOCUMENT[^\n]*\n(.*?)\n[^\n]*END DOCUMENT", re.DOTALL | re.IGNORECASE),
    re.compile(r"<<<(.*?)>>>", re.DOTALL),
    re.compile(r'"""(.*?)"""', re.DOTALL),
)
_SCHEMA_WORD = re.compile(r"schema", re.IGNORECASE)
_DECODER = json.JSONDecoder()


def _message_text(message: Any) -> str:
    """Text of one chat message; content may be a string or a list of typed parts."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict)]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def _schema_from_text(text: str) -> dict[str, Any] | None:
    """Find a JSON schema embedded in prompt text (instructor's JSON / MD_JSON modes do this)."""
    for match in _SCHEMA_WORD.finditer(text):
        start = text.find("{", match.end())
        if start < 0:
            return None
        try:
            value, _ = _DECODER.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(value, dict) and ({"properties", "$defs", "type"} & value.keys()):
            return value
    return None


@dataclass
class ChatRequest:
    """A parsed ``/v1/chat/completions`` body, with the views a responder needs.

    ``mode`` says how the answer will be shaped: ``"tools"`` (tool call arguments),
    ``"json_schema"`` / ``"json_object"`` (JSON in content) or ``"text"`` (plain content).
    """

    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages = self.body.get("messages")
        return messages if isinstance(messages, list) else []

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def wants_logprobs(self) -> bool:
        return bool(self.body.get("logprobs"))

    @property
    def top_logprobs(self) -> int:
        value = self.body.get("top_logprobs")
        return int(value) if isinstance(value, int) and value > 0 else 0

    @property
    def max_tokens(self) -> int | None:
        value = self.body.get("max_completion_tokens", self.body.get("max_tokens"))
        return value if isinstance(value, int) else None

    @functools.cached_property
    def tool(self) -> dict[str, Any] | None:
        """The function the answer must call, or None when no tool call is expected."""
        tools = self.body.get("tools")
        choice = self.body.get("tool_choice", "auto")
        if not isinstance(tools, list) or not tools or choice == "none":
            return None
        functions = [t.get("function", {}) for t in tools if isinstance(t, dict)]
        if isinstance(choice, dict):
            wanted = (choice.get("function") or {}).get("name")
            for function in functions:
                if function.get("name") == wanted:
                    return function
        return functions[0] if functions else None

    @property
    def tool_choice_is_named(self) -> bool:
        return isinstance(self.body.get("tool_choice"), dict)

    @functools.cached_property
    def mode(self) -> Literal["tools", "json_schema", "json_object", "text"]:
        if self.tool is not None:
            return "tools"
        response_format = self.body.get("response_format")
        kind = response_format.get("type") if isinstance(response_format, dict) else None
        if kind == "json_schema":
            return "json_schema"
        if kind == "json_object":
            return "json_object"
        return "text"

    @functools.cached_property
    def schema(self) -> dict[str, Any] | None:
        """The JSON schema of the expected answer: tool parameters, response_format schema, or
        a schema embedded in the prompt text (instructor JSON / MD_JSON); None if there is none.
        """
        if self.tool is not None:
            parameters = self.tool.get("parameters")
            return parameters if isinstance(parameters, dict) else None
        response_format = self.body.get("response_format")
        if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema")
            if isinstance(schema, dict):
                return schema
        for text in (self.system_text, self.prompt_text):
            found = _schema_from_text(text)
            if found is not None:
                return found
        return None

    @functools.cached_property
    def system_text(self) -> str:
        return "\n".join(
            _message_text(m) for m in self.messages if m.get("role") in ("system", "developer")
        )

    @functools.cached_property
    def user_text(self) -> str:
        """All user messages joined: the easiest thing to script answers against."""
        return "\n".join(_message_text(m) for m in self.messages if m.get("role") == "user")

    @functools.cached_property
    def prompt_text(self) -> str:
        return "\n".join(_message_text(m) for m in self.messages)

    @functools.cached_property
    def documents(self) -> list[str]:
        """Every delimited document in the user messages (first matching delimiter style)."""
        for pattern in DOCUMENT_PATTERNS:
            found = [m.group(1).strip("\r\n") for m in pattern.finditer(self.user_text)]
            if found:
                return found
        return []

    @property
    def document(self) -> str:
        """The first delimited document, else the whole user text (so rules still find values)."""
        documents = self.documents
        return documents[0] if documents else self.user_text

    def text_for(self, where: str) -> str:
        """The text a scripted rule matches against: user, prompt, system or document."""
        views = {
            "user": lambda: self.user_text,
            "prompt": lambda: self.prompt_text,
            "system": lambda: self.system_text,
            "document": lambda: self.document,
        }
        if where not in views:
            raise ValueError(f"where must be one of {sorted(views)}, not {where!r}")
        return views[where]()


@dataclass
class Answer:
    """A responder's answer with extras: per-token logprob and a forced finish_reason."""

    value: JSONValue
    logprob: float | None = None
    finish_reason: str | None = None


AnswerLike: TypeAlias = dict[str, Any] | list[Any] | str | Answer
Responder: TypeAlias = Callable[[ChatRequest], Any]


# --------------------------------------------------------------------------------------------
# Default responder: a schema-valid answer filled from the document
# --------------------------------------------------------------------------------------------

_ISO_DATE = re.compile(r"(?<!\d)(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2})?))?(?!\d)")
_PARTIAL_DATE = re.compile(r"(?<![\d-])(\d{4}-\d{2})(?![\d-])")
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)|\n")
_YES_NO = re.compile(r"\b(yes|true|no|not|false|none)\b", re.IGNORECASE)
_DATE_NAME = re.compile(r"(?:^|_)date(?:_|$)|[a-z]Date(?:[A-Z_]|$)|^date", re.IGNORECASE)
_EVIDENCE_WORDS = ("evidence", "quote", "excerpt", "citation")
_MAX_DEPTH = 12


@dataclass
class _FillContext:
    """State of one schema walk: the document, the schema root for $ref, and the positions
    where values were found (so an evidence field can quote around its siblings' values)."""

    document: str
    root: dict[str, Any]
    positions: list[int] = field(default_factory=list)

    def first_number(self) -> re.Match[str] | None:
        """The first number that is not part of an ISO date ('2024-03-15' is not 2024)."""
        document = self.document
        for match in _NUMBER.finditer(document):
            start = max(0, match.start() - 10)
            window = _ISO_DATE.finditer(document, start, match.end() + 10)
            if not any(d.start() <= match.start() < d.end() for d in window):
                return match
        return None


def _resolve(schema: Any, root: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` (``#/$defs/X``, any local JSON pointer) and single-item ``allOf``."""
    for _ in range(_MAX_DEPTH):
        if not isinstance(schema, dict):
            return {}
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            target: Any = root
            for part in ref.lstrip("#").strip("/").split("/"):
                if part:
                    target = target.get(part.replace("~1", "/").replace("~0", "~"), {})
            merged = {k: v for k, v in schema.items() if k != "$ref"}
            schema = {**target, **merged} if isinstance(target, dict) else merged
            continue
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1:
            schema = {**{k: v for k, v in schema.items() if k != "allOf"}, **all_of[0]}
            continue
        return schema
    return {}


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type")
    if isinstance(kind, list):
        return [str(k) for k in kind]
    if isinstance(kind, str):
        return [kind]
    if "properties" in schema:
        return ["object"]
    if "items" in schema:
        return ["array"]
    return []


def _is_nullable(schema: dict[str, Any], root: dict[str, Any]) -> bool:
    if schema.get("nullable") is True or "null" in _types(schema):
        return True
    branches = schema.get("anyOf") or schema.get("oneOf") or []
    return any("null" in _types(_resolve(b, root)) for b in branches)


def _find_word(value: str, text: str) -> int | None:
    match = re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text, re.IGNORECASE)
    return match.start() if match else None


def _sentence_around(document: str, position: int, limit: int = 200) -> str:
    """The sentence containing ``position``: an exact substring of the document."""
    start = 0
    for match in _SENTENCE_END.finditer(document, 0, position):
        start = match.end()
    end_match = _SENTENCE_END.search(document, position)
    end = end_match.end() if end_match else len(document)
    start = max(start, position - limit // 2)
    end = min(end, start + limit)
    return document[start:end].strip()


class SchemaResponder:
    """Builds a schema-valid answer from the request's schema and its document text.

    Why rule-based: pipeline tests need plausible, grounded values (an evidence quote that
    really is in the document) without scripting every request. Rules, per property:
    enum → first enum value appearing in the document (else null / first value);
    number → first number (dates excluded); date → first ISO date; boolean → yes/no cue;
    ``*evidence*``/``*quote*`` → the document sentence around a sibling's value;
    ``*confidence*`` → 0.9; other strings → a short span of the document.
    Handles nested objects, arrays, anyOf/oneOf with null, ``$ref``/``$defs``.
    """

    def __init__(self, confidence: float = 0.9, no_schema_text: str = "OK") -> None:
        self.confidence = confidence
        self.no_schema_text = no_schema_text

    def __call__(self, request: ChatRequest) -> AnswerLike:
        schema = request.schema
        if schema is None:
            return self.no_schema_text
        return self.fill(schema, request.document)

    def fill(self, schema: dict[str, Any], document: str) -> JSONValue:
        """Public so other responders can reuse it (e.g. fill, then override one field)."""
        context = _FillContext(document=document, root=schema)
        return self._value(schema, "", context, 0)

    def _value(
        self, raw: Any, name: str, ctx: _FillContext, depth: int, optional: bool = False
    ) -> JSONValue:
        """``optional``: an enclosing anyOf allows null, so "not found" may be null here."""
        schema = _resolve(raw, ctx.root)
        nullable = optional or _is_nullable(schema, ctx.root)
        if depth > _MAX_DEPTH:
            return None
        if "const" in schema:
            return schema["const"]
        branches = schema.get("anyOf") or schema.get("oneOf")
        if isinstance(branches, list) and branches:
            return self._union(branches, name, ctx, depth, nullable)
        if isinstance(schema.get("enum"), list):
            return self._enum(schema["enum"], ctx, nullable)
        kinds = [k for k in _types(schema) if k != "null"]
        kind = kinds[0] if kinds else ""
        builders: dict[str, Callable[[], JSONValue]] = {
            "object": lambda: self._object(schema, ctx, depth),
            "array": lambda: self._array(schema, name, ctx, depth),
            "number": lambda: self._number(schema, name, ctx, nullable, integer=False),
            "integer": lambda: self._number(schema, name, ctx, nullable, integer=True),
            "boolean": lambda: self._boolean(ctx),
            "string": lambda: self._string(schema, name, ctx, nullable),
        }
        if kind in builders:
            return builders[kind]()
        return None if nullable or kind == "" else ""

    def _union(
        self, branches: list[Any], name: str, ctx: _FillContext, depth: int, nullable: bool
    ) -> JSONValue:
        """Try the non-null branches in order; the first that finds something wins."""
        candidates = [b for b in branches if "null" not in _types(_resolve(b, ctx.root))]
        fallback: JSONValue = None
        for branch in candidates:
            value = self._value(branch, name, ctx, depth + 1, optional=True)
            if value is not None:
                return value
        if not nullable and candidates:
            fallback = self._value(candidates[0], name, _FillContext("", ctx.root), depth + 1)
        return fallback

    def _enum(self, options: list[Any], ctx: _FillContext, nullable: bool) -> JSONValue:
        for option in options:
            if option is None:
                continue
            position = _find_word(str(option), ctx.document)
            if position is not None:
                ctx.positions.append(position)
                return option
        if nullable or None in options or not options:
            return None
        return options[0]

    def _object(self, schema: dict[str, Any], ctx: _FillContext, depth: int) -> dict[str, Any]:
        properties: dict[str, Any] = schema.get("properties") or {}
        result: dict[str, Any] = {}
        before = len(ctx.positions)
        evidence_names = [n for n in properties if any(w in n.lower() for w in _EVIDENCE_WORDS)]
        for prop_name, prop_schema in properties.items():
            if prop_name not in evidence_names:
                result[prop_name] = self._value(prop_schema, prop_name, ctx, depth + 1)
        anchors = ctx.positions[before:]
        for prop_name in evidence_names:
            result[prop_name] = self._evidence(properties[prop_name], ctx, anchors)
        return {name: result[name] for name in properties}

    def _evidence(self, raw: Any, ctx: _FillContext, anchors: list[int]) -> JSONValue:
        schema = _resolve(raw, ctx.root)
        if "string" not in _types(schema) and not (schema.get("anyOf") or schema.get("oneOf")):
            return self._value(schema, "", ctx, 0)
        document = ctx.document
        if not document.strip():
            return None if _is_nullable(schema, ctx.root) else ""
        position = anchors[0] if anchors else len(document) - len(document.lstrip())
        return _sentence_around(document, position)

    def _array(self, schema: dict[str, Any], name: str, ctx: _FillContext, depth: int) -> list:
        items = _resolve(schema.get("items", {}), ctx.root)
        if isinstance(items.get("enum"), list):
            found = [o for o in items["enum"] if o is not None and _find_word(str(o), ctx.document)]
            values: list[Any] = found
        else:
            item = self._value(items, name, ctx, depth + 1)
            values = [] if item is None else [item]
        minimum = schema.get("minItems", 0)
        while len(values) < minimum:
            values.append(values[0] if values else self._value(items, name, ctx, depth + 1))
        return values

    def _number(
        self, schema: dict[str, Any], name: str, ctx: _FillContext, nullable: bool, integer: bool
    ) -> JSONValue:
        if "confidence" in name.lower():
            maximum = schema.get("maximum", schema.get("exclusiveMaximum", 1))
            value: float = self.confidence if maximum <= 1 else self.confidence * 100
            return round(value) if integer else value
        match = ctx.first_number()
        if match is None:
            return None if nullable else (schema.get("minimum", 0))
        ctx.positions.append(match.start())
        number = float(match.group(0).replace(",", ""))
        number = max(number, schema.get("minimum", number))
        number = min(number, schema.get("maximum", number))
        return round(number) if integer else number

    @staticmethod
    def _boolean(ctx: _FillContext) -> bool:
        match = _YES_NO.search(ctx.document)
        if match is None:
            return True
        ctx.positions.append(match.start())
        return match.group(1).lower() in ("yes", "true")

    def _string(
        self, schema: dict[str, Any], name: str, ctx: _FillContext, nullable: bool
    ) -> JSONValue:
        fmt = schema.get("format", "")
        # A string held to an ISO-date pattern is a date too (extractflow's DATE answers:
        # ``value`` with pattern ^\d{4}(-\d{2}(-\d{2})?)?$, partial dates allowed).
        iso_pattern = str(schema.get("pattern", "")).startswith(("^\\d{4}", "^[0-9]{4}"))
        if fmt in ("date", "date-time") or _DATE_NAME.search(name) or iso_pattern:
            return self._date(fmt, ctx, nullable)
        document = ctx.document
        stripped = document.strip()
        if not stripped:
            return None if nullable else ""
        # No anchor recorded: evidence should quote a found number/date/category, not this.
        end_match = _SENTENCE_END.search(stripped)
        span = stripped[: end_match.start() if end_match else len(stripped)][:60].strip()
        max_length = schema.get("maxLength")
        return span[:max_length] if isinstance(max_length, int) else span

    @staticmethod
    def _date(fmt: str, ctx: _FillContext, nullable: bool) -> JSONValue:
        match = _ISO_DATE.search(ctx.document)
        if match is not None:
            ctx.positions.append(match.start())
            return match.group(1) + ("T00:00:00Z" if fmt == "date-time" else "")
        partial = _PARTIAL_DATE.search(ctx.document) if not fmt else None
        if partial is not None:
            ctx.positions.append(partial.start())
            return partial.group(1)
        if nullable:
            return None
        return "1970-01-01T00:00:00Z" if fmt == "date-time" else "1970-01-01"


# --------------------------------------------------------------------------------------------
# Scripted responder
# --------------------------------------------------------------------------------------------


@dataclass
class _Rule:
    substring: str
    answer: Any
    where: str
    times: int | None
    case_sensitive: bool
    hits: int = 0

    def matches(self, request: ChatRequest) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        text = request.text_for(self.where)
        if self.case_sensitive:
            return self.substring in text
        return self.substring.lower() in text.lower()


class ScriptedResponder:
    """Answers by substring match on the prompt; the first matching rule wins.

    Why substring on the user message: pipeline tests script answers per document
    ("the contract mentioning ACME says X"), and the document sits in the user message.
    Answers may be a dict / list / str / :class:`Answer`, or a callable taking the
    :class:`ChatRequest`. Unmatched requests go to ``fallback`` (default: SchemaResponder).
    """

    def __init__(self, fallback: Responder | None = None) -> None:
        self.fallback: Responder = fallback if fallback is not None else SchemaResponder()
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self.unmatched = 0

    def when(
        self,
        substring: str,
        answer: Any,
        *,
        times: int | None = None,
        where: Literal["user", "prompt", "system", "document"] = "user",
        case_sensitive: bool = True,
    ) -> ScriptedResponder:
        """Add a rule; ``times`` limits how often it fires (then later rules get a turn)."""
        ChatRequest(body={}).text_for(where)  # validate `where` early, not at request time
        with self._lock:
            self._rules.append(_Rule(substring, answer, where, times, case_sensitive))
        return self

    def hits(self, substring: str) -> int:
        """How many requests the rule(s) for ``substring`` answered."""
        with self._lock:
            return sum(r.hits for r in self._rules if r.substring == substring)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self.unmatched = 0

    def __call__(self, request: ChatRequest) -> Any:
        with self._lock:
            rule = next((r for r in self._rules if r.matches(request)), None)
            if rule is not None:
                rule.hits += 1
            else:
                self.unmatched += 1
        if rule is None:
            return self.fallback(request)
        return rule.answer(request) if callable(rule.answer) else rule.answer


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One injected failure. ``retry_after`` (seconds) is sent for 429 (and 503 if set);
    ``hold`` is how long a ``timeout`` keeps the request open (ends early if the client goes)."""

    kind: str
    retry_after: float | None = None
    hold: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")


@dataclass
class _FaultRule:
    fault: Fault
    match: Callable[[ChatRequest], bool]
    times: int | None
    fired: int = 0


@dataclass
class _FaultRate:
    fault: Fault
    probability: float
    rng: random.Random


class _FaultPlan:
    """Decides the fault (if any) for each chat request: per-request rules first, then the
    ``fail_next`` queue, then random rates. Thread-safe: tests configure it from their thread
    while the server's loop consumes it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self._rules: list[_FaultRule] = []
        self._rates: list[_FaultRate] = []

    def add_next(self, n: int, fault: Fault) -> None:
        with self._lock:
            self._queue.extend([fault] * n)

    def add_rule(self, rule: _FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def set_rate(self, fault: Fault, probability: float, seed: int | None) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        with self._lock:
            self._rates = [r for r in self._rates if r.fault.kind != fault.kind]
            if probability > 0:
                self._rates.append(_FaultRate(fault, probability, random.Random(seed)))

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._rules.clear()
            self._rates.clear()

    @property
    def pending(self) -> int:
        return len(self._queue)

    def pick(self, request: ChatRequest) -> Fault | None:
        with self._lock:
            for rule in self._rules:
                if (rule.times is None or rule.fired < rule.times) and rule.match(request):
                    rule.fired += 1
                    return rule.fault
            if self._queue:
                return self._queue.popleft()
            for rate in self._rates:
                if rate.rng.random() < rate.probability:
                    return rate.fault
        return None


def _violating_value(raw: Any, root: dict[str, Any]) -> JSONValue:
    """A JSON value of the wrong type for ``raw`` (valid JSON, invalid against the schema)."""
    schema = _resolve(raw, root)
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        non_null = [b for b in branches if "null" not in _types(_resolve(b, root))]
        return _violating_value(non_null[0], root) if non_null else 12345
    kinds = set(_types(schema))
    if "enum" in schema or kinds & {"string"}:
        return 12345
    if kinds & {"number", "integer"}:
        return "not a number"
    if "boolean" in kinds:
        return "maybe"
    if "array" in kinds:
        return "not an array"
    if "object" in kinds:
        return "not an object"
    return {"unexpected": True}


def schema_violation(schema: dict[str, Any] | None) -> JSONValue:
    """Valid JSON that breaks ``schema``: every property has a wrong type and the first
    required property is missing; a schema without properties gets an array."""
    resolved = _resolve(schema or {}, schema or {})
    properties: dict[str, Any] = resolved.get("properties") or {}
    if not properties:
        return ["not", "an", "object"]
    required = list(resolved.get("required") or [])
    answer = {name: _violating_value(sub, resolved) for name, sub in properties.items()}
    if required:
        answer.pop(required[0], None)
    return answer


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


@dataclass
class _HttpRequest:
    method: str
    path: str
    query: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"


@dataclass
class _Reply:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"


@dataclass
class _Hold:
    """Keep the request open without answering, then close (the ``timeout`` fault)."""

    seconds: float


@dataclass
class _Disconnect:
    """Send the start of a response and close the connection (the ``disconnect`` fault)."""


class _BadRequest(Exception):
    """The bytes on the wire are not a request we can parse; answer 400 and close."""


def _json_reply(status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> _Reply:
    return _Reply(status, json.dumps(payload).encode(), headers or [])


def _error_reply(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> _Reply:
    """The OpenAI error envelope, which the SDK turns into ``e.code`` / ``e.type`` / ``e.body``."""
    error = {"message": message, "type": type_, "param": param, "code": code}
    return _json_reply(status, {"error": error}, headers)


def _encode_head(status: int, headers: list[tuple[str, str]], length: int, keep: bool) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}", f"content-length: {length}"]
    lines += [f"{name}: {value}" for name, value in headers]
    lines.append("connection: keep-alive" if keep else "connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _parse_head(head: bytes) -> tuple[str, str, str, str, dict[str, str]]:
    try:
        text = head.decode("latin-1")
        request_line, *header_lines = text.split("\r\n")
        method, target, version = request_line.split(" ", 2)
    except ValueError as exc:
        raise _BadRequest("malformed request line") from exc
    path, _, query = target.partition("?")
    headers: dict[str, str] = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return method.upper(), path, query, version.strip(), headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise _BadRequest("bad chunk size") from exc
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # skip trailers
            return b"".join(chunks)
        total += size
        if total > _MAX_BODY_BYTES:
            raise _BadRequest("body too large")
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _read_request(reader: asyncio.StreamReader) -> _HttpRequest | None:
    """Read one request; None when the client closed the connection between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError as exc:
        raise _BadRequest("request head too large") from exc
    method, path, query, version, headers = _parse_head(head)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    else:
        try:
            length = int(headers.get("content-length", "0") or 0)
        except ValueError as exc:
            raise _BadRequest("bad content-length") from exc
        if length < 0 or length > _MAX_BODY_BYTES:
            raise _BadRequest("bad content-length")
        body = await reader.readexactly(length) if length else b""
    return _HttpRequest(method, path, query, version, headers, body)


# --------------------------------------------------------------------------------------------
# Completion shaping
# --------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\w+|[^\w\s]|\s+")


def _estimate_tokens(size: int) -> int:
    return max(1, size // 4)


def _logprobs(text: str, logprob: float, top: int) -> dict[str, Any]:
    """Content logprobs for ``text``: one entry per word / punctuation / whitespace token."""
    entries = []
    for token in _TOKEN.findall(text)[:_MAX_LOGPROB_TOKENS]:
        alternatives = [{"token": token, "logprob": logprob, "bytes": list(token.encode())}]
        alternatives += [
            {"token": f"<alt{i}>", "logprob": logprob - 3.0 * i, "bytes": None}
            for i in range(1, top)
        ]
        entries.append(
            {
                "token": token,
                "logprob": logprob,
                "bytes": list(token.encode()),
                "top_logprobs": alternatives[:top],
            }
        )
    return {"content": entries, "refusal": None}


def _render_text(value: Any, mode: str, fence: bool) -> str:
    if isinstance(value, str):
        return value
    text = json.dumps(value, ensure_ascii=False)
    return f"```json\n{text}\n```" if fence and mode == "text" else text


def _as_answer(result: Any) -> Answer:
    return result if isinstance(result, Answer) else Answer(value=result)


def _content_fault_text(kind: str, good_text: str, request: ChatRequest, fence: bool) -> str:
    if kind == "malformed_json":
        broken = '{"value": this is not json, "confidence": }'
        return f"```json\n{broken}\n```" if fence and request.mode == "text" else broken
    if kind == "truncated_json":
        return good_text[: max(1, len(good_text) // 2)]
    return _render_text(schema_violation(request.schema), request.mode, fence)


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request as the server saw it (admin ``/_fake/`` calls are not recorded)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    time: float
    chat: ChatRequest | None = None
    status: int | None = None
    fault: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "body": self.body,
            "time": self.time,
            "status": self.status,
            "fault": self.fault,
            "error": self.error,
        }


class FakeLLMServer:
    """A fake OpenAI-compatible server on 127.0.0.1 (random free port by default).

    Runs in a background thread with ``start()`` / as a context manager, or blocking in the
    current thread with ``run()`` (what the ``python -m`` entry point uses). All control
    methods are safe to call from another thread while requests are being served.
    """

    def __init__(
        self,
        model: str | Sequence[str] | None = "fake-model",
        *,
        api_key: str | None = None,
        responder: Responder | None = None,
        latency: Latency = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
        retry_after: float | None = 1.0,
        timeout_hold: float = 30.0,
        context_window: int | None = None,
        text_fence: Literal["auto", "always", "never"] = "auto",
        token_logprob: float = -0.01,
        max_recorded: int | None = None,
        prompt_cache: bool = True,
        count_request_schema: bool = False,
        batch_api: bool = True,
    ) -> None:
        """``model=None`` accepts any model name; ``context_window`` (tokens, estimated as
        bytes/4) turns oversized prompts into ``context_length_exceeded``; ``text_fence``
        wraps JSON answers in a ```json fence for plain-text requests ("auto": when the prompt
        mentions ```json, as instructor's MD_JSON does); ``max_recorded`` bounds memory in
        long benchmarks. ``prompt_cache`` reports, like a provider's prompt cache, the prompt
        tokens shared with an earlier request (the longest common prefix of the messages'
        text with one of the last 64 prompts, bytes/4) as
        ``usage.prompt_tokens_details.cached_tokens``. ``count_request_schema`` also counts
        the ``tools`` and ``response_format`` of a request as prompt tokens, as providers
        bill them. ``usage_totals`` sums the usage it reported (prompt, completion, cached)."""
        self.models: list[str] | None = (
            [model] if isinstance(model, str) else (list(model) if model is not None else None)
        )
        self.api_key = api_key
        self.responder: Responder = responder if responder is not None else SchemaResponder()
        self.host = host
        self.port = port
        self.retry_after = retry_after
        self.timeout_hold = timeout_hold
        self.context_window = context_window
        self.text_fence = text_fence
        self.token_logprob = token_logprob
        self._rng = random.Random(seed)
        self._latency: Latency = 0.0
        self.latency = latency
        self._faults = _FaultPlan()
        self._record_lock = threading.Lock()
        self._requests: deque[RecordedRequest] = deque(maxlen=max_recorded)
        self._ids = itertools.count(1)
        self.prompt_cache = prompt_cache
        self.count_request_schema = count_request_schema
        self._recent_prompts: deque[str] = deque(maxlen=64)
        self.in_flight = 0
        self._reset_counters()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._connections: set[asyncio.Task[None]] = set()
        from testing.fake_batches import FakeBatchAPI  # /v1/files and /v1/batches

        self.batches = FakeBatchAPI(self, seed=seed) if batch_api else None

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What to pass as ``base_url`` to ``openai.OpenAI``."""
        return f"{self.url}/v1"

    def start(self) -> Self:
        """Serve from a daemon thread; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        self._ready.clear()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._serve()), name="fake-llm-server", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake LLM server did not start within 10 s")
        if self._startup_error is not None:
            self._thread = None
            raise RuntimeError("fake LLM server failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        """Stop serving and close every connection (held requests included)."""
        thread, loop, event = self._thread, self._loop, self._stop_event
        if thread is None or loop is None or event is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(event.set)
        thread.join(10)
        self._thread = None

    def run(self, on_ready: Callable[[FakeLLMServer], None] | None = None) -> None:
        """Serve in the current thread until SIGINT/SIGTERM or :meth:`stop`."""
        asyncio.run(self._serve(on_ready=on_ready, handle_signals=True))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _serve(
        self, on_ready: Callable[[FakeLLMServer], None] | None = None, handle_signals: bool = False
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        try:
            server = await asyncio.start_server(
                self._handle_connection, self.host, self.port, backlog=2048, limit=_MAX_HEAD_BYTES
            )
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._startup_error = exc
            self._ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        if handle_signals:
            _install_signal_handlers(self._loop, self._stop_event)
        self._ready.set()
        if on_ready is not None:
            on_ready(self)
        try:
            await self._stop_event.wait()
        finally:
            server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await server.wait_closed()

    # ---- runtime configuration ----------------------------------------------------------------

    @property
    def latency(self) -> Latency:
        """Seconds added to each chat completion: a float or a (min, max) uniform range."""
        return self._latency

    @latency.setter
    def latency(self, value: Latency) -> None:
        if isinstance(value, (tuple, list)):
            low, high = float(value[0]), float(value[1])
            if not 0 <= low <= high:
                raise ValueError("latency range must satisfy 0 <= min <= max")
            self._latency = (low, high)
        else:
            if float(value) < 0:
                raise ValueError("latency must be >= 0")
            self._latency = float(value)

    def _draw_latency(self) -> float:
        value = self._latency
        return self._rng.uniform(*value) if isinstance(value, tuple) else value

    def fail_next(
        self,
        n: int = 1,
        kind: str = "500",
        *,
        retry_after: float | None = None,
        hold: float | None = None,
    ) -> None:
        """Make the next ``n`` chat completions fail with ``kind`` (queued, FIFO)."""
        self._faults.add_next(n, Fault(str(kind), retry_after, hold))

    def fail_when(
        self,
        match: str | Callable[[ChatRequest], bool],
        kind: str,
        *,
        times: int | None = None,
        where: Literal["user", "prompt", "system", "document"] = "user",
        retry_after: float | None = None,
        hold: float | None = None,
    ) -> None:
        """Fail requests whose ``where`` text contains ``match`` (or where ``match(req)``)."""
        if isinstance(match, str):
            needle = match
            predicate: Callable[[ChatRequest], bool] = lambda r: needle in r.text_for(where)
        else:
            predicate = match
        self._faults.add_rule(_FaultRule(Fault(str(kind), retry_after, hold), predicate, times))

    def fail_rate(
        self,
        kind: str,
        p: float,
        seed: int | None = None,
        *,
        retry_after: float | None = None,
        hold: float | None = None,
    ) -> None:
        """Fail each chat completion with probability ``p`` (``p=0`` removes the rate)."""
        self._faults.set_rate(Fault(str(kind), retry_after, hold), p, seed)

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def pending_faults(self) -> int:
        return self._faults.pending

    # ---- observation ---------------------------------------------------------------------------

    def _reset_counters(self) -> None:
        self.total_requests = 0
        self.connections_opened = 0
        self.max_in_flight = self.in_flight  # requests still running keep counting
        self.path_counts: Counter[str] = Counter()
        self.status_counts: Counter[int] = Counter()
        self.fault_counts: Counter[str] = Counter()
        self.usage_totals: Counter[str] = Counter()

    def reset(self) -> None:
        """Forget requests, counters and faults (in-flight requests are still tracked)."""
        with self._record_lock:
            self._requests.clear()
            self._recent_prompts.clear()
            self._reset_counters()
        self._faults.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._record_lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[ChatRequest]:
        return [r.chat for r in self.requests if r.chat is not None]

    def stats(self) -> dict[str, Any]:
        """Counters as plain JSON (the same shape ``FakeLLMProcess.stats()`` returns)."""
        with self._record_lock:
            return {
                "total_requests": self.total_requests,
                "connections_opened": self.connections_opened,
                "in_flight": self.in_flight,
                "max_in_flight": self.max_in_flight,
                "path_counts": dict(self.path_counts),
                "status_counts": {str(k): v for k, v in self.status_counts.items()},
                "fault_counts": dict(self.fault_counts),
                "recorded": len(self._requests),
                "batches": dict(self.batches.counts) if self.batches is not None else {},
            }

    # ---- convenience clients -------------------------------------------------------------------

    def _client_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs.setdefault("base_url", self.base_url)
        kwargs.setdefault("api_key", self.api_key or "sk-fake")
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 10.0)
        return kwargs

    def client(self, **kwargs: Any) -> Any:
        """An ``openai.OpenAI`` pointed at this server (``max_retries=0`` unless given)."""
        import openai

        return openai.OpenAI(**self._client_kwargs(kwargs))

    def async_client(self, **kwargs: Any) -> Any:
        """An ``openai.AsyncOpenAI`` pointed at this server (``max_retries=0`` unless given)."""
        import openai

        return openai.AsyncOpenAI(**self._client_kwargs(kwargs))

    # ---- connection handling ---------------------------------------------------------------

    async def _handle_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self.connections_opened += 1
        try:
            while await self._serve_one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; True to keep the connection for the next one."""
        try:
            request = await _read_request(reader)
        except _BadRequest as exc:
            await _write(writer, _error_reply(400, str(exc)), keep=False)
            return False
        if request is None:
            return False
        if request.path.startswith(_ADMIN_PREFIX):
            await _write(writer, self._admin(request), keep=request.keep_alive)
            return request.keep_alive
        record = self._record(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            reply = await self._route(request, record)
            return await self._send(reply, record, request, reader, writer)
        finally:
            self.in_flight -= 1

    async def _send(
        self,
        reply: _Reply | _Hold | _Disconnect,
        record: RecordedRequest,
        request: _HttpRequest,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        if isinstance(reply, _Hold):
            with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
                await asyncio.wait_for(reader.read(1), timeout=reply.seconds)  # EOF = client left
            return False
        if isinstance(reply, _Disconnect):
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b'content-length: 4096\r\n\r\n{"id": "chatcmpl-'
            )
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            return False
        record.status = reply.status
        with self._record_lock:
            self.status_counts[reply.status] += 1
        keep = request.keep_alive
        await _write(writer, reply, keep=keep)
        return keep

    def _record(self, request: _HttpRequest) -> RecordedRequest:
        body: Any = None
        if request.body:
            try:
                body = json.loads(request.body)
            except ValueError:
                body = request.body.decode("utf-8", "replace")
        record = RecordedRequest(request.method, request.path, request.headers, body, time.time())
        with self._record_lock:
            self._requests.append(record)
            self.total_requests += 1
            self.path_counts[request.path] += 1
        return record

    # ---- routing -------------------------------------------------------------------------------

    async def _route(self, request: _HttpRequest, record: RecordedRequest) -> Any:
        if self.api_key is not None and not self._authorized(request.headers):
            return _error_reply(401, "Incorrect API key provided.", code="invalid_api_key")
        path = request.path.rstrip("/")
        if path == "/v1/chat/completions":
            if request.method != "POST":
                return _error_reply(405, f"Method {request.method} not allowed on {path}")
            return await self._chat(record)
        if path == "/v1/models" and request.method == "GET":
            return _json_reply(200, {"object": "list", "data": self._model_cards()})
        if path.startswith("/v1/models/") and request.method == "GET":
            return self._one_model(path.removeprefix("/v1/models/"))
        if self.batches is not None and path.startswith(("/v1/files", "/v1/batches")):
            return await self.batches.route(request, path)
        return _error_reply(
            404, f"Unknown request URL: {request.method} {request.path}", code="unknown_url"
        )

    def _authorized(self, headers: dict[str, str]) -> bool:
        return headers.get("authorization", "") == f"Bearer {self.api_key}"

    def _model_cards(self) -> list[dict[str, Any]]:
        return [
            {"id": name, "object": "model", "created": 1700000000, "owned_by": "extractflow-fake"}
            for name in (self.models or ["fake-model"])
        ]

    def _one_model(self, name: str) -> _Reply:
        if self.models is None or name in self.models:
            card = {"id": name, "object": "model", "created": 1700000000, "owned_by": "fake"}
            return _json_reply(200, card)
        return _model_not_found(name)

    async def _chat(self, record: RecordedRequest, *, latency: bool = True
                    ) -> _Reply | _Hold | _Disconnect:
        body = record.body
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error_reply(400, "Request body must be a JSON object with 'messages'.")
        request = ChatRequest(body=body, headers=record.headers)
        record.chat = request
        if self.models is not None and request.model not in self.models:
            return _model_not_found(request.model)
        prompt_chars = len(json.dumps(body.get("messages")))
        if self.count_request_schema:
            prompt_chars += sum(len(json.dumps(body[k])) for k in ("tools", "response_format")
                                if body.get(k) is not None)
        prompt_tokens = _estimate_tokens(prompt_chars)
        if self.context_window is not None and prompt_tokens > self.context_window:
            return _context_length_error(self.context_window, prompt_tokens)
        fault = self._faults.pick(request)
        if fault is not None:
            record.fault = fault.kind
            with self._record_lock:
                self.fault_counts[fault.kind] += 1
        if fault is not None and fault.kind in _IMMEDIATE_FAULTS:
            return self._fault_reply(fault, prompt_tokens)
        if fault is not None and fault.kind == "timeout":
            return _Hold(fault.hold if fault.hold is not None else self.timeout_hold)
        delay = self._draw_latency() if latency else 0.0
        if delay > 0:
            await asyncio.sleep(delay)
        if fault is not None and fault.kind in ("500", "503"):
            return self._fault_reply(fault, prompt_tokens)
        if fault is not None and fault.kind == "disconnect":
            return _Disconnect()
        return await self._completion(request, record, prompt_tokens, fault)

    def _fault_reply(self, fault: Fault, prompt_tokens: int) -> _Reply:
        if fault.kind == "429":
            retry_after = fault.retry_after if fault.retry_after is not None else self.retry_after
            headers = [] if retry_after is None else [("retry-after", _fmt_seconds(retry_after))]
            return _error_reply(
                429,
                "Rate limit reached for requests (fake server).",
                type_="requests",
                code="rate_limit_exceeded",
                headers=headers,
            )
        if fault.kind == "401":
            return _error_reply(401, "Incorrect API key provided.", code="invalid_api_key")
        if fault.kind == "400_context_length":
            return _context_length_error(self.context_window or 8192, prompt_tokens + 8192)
        if fault.kind == "503":
            headers = []
            if fault.retry_after is not None:
                headers = [("retry-after", _fmt_seconds(fault.retry_after))]
            return _error_reply(
                503,
                "The server is overloaded or not ready yet.",
                type_="server_error",
                code="service_unavailable",
                headers=headers,
            )
        return _error_reply(
            500, "The server had an error while processing your request.", type_="server_error"
        )

    async def _completion(
        self, request: ChatRequest, record: RecordedRequest, prompt_tokens: int, fault: Fault | None
    ) -> _Reply:
        try:
            result = self.responder(request)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # noqa: BLE001 - a broken responder must surface as a 500
            record.error = "".join(traceback.format_exception_only(exc)).strip()
            return _error_reply(500, f"fake responder failed: {record.error}", type_="server_error")
        answer = _as_answer(result)
        fence = self.text_fence == "always" or (
            self.text_fence == "auto" and "```json" in request.prompt_text
        )
        text = _render_text(answer.value, request.mode, fence)
        finish_reason = answer.finish_reason
        if fault is not None and fault.kind in _CONTENT_FAULTS:
            text = _content_fault_text(fault.kind, text, request, fence)
            finish_reason = "length" if fault.kind == "truncated_json" else finish_reason
        payload = self._completion_payload(request, text, finish_reason, prompt_tokens, answer)
        if self.prompt_cache:
            cached = min(prompt_tokens, self._cached_prefix_tokens(request))
            payload["usage"]["prompt_tokens_details"] = {"cached_tokens": cached}
        with self._record_lock:
            usage = payload["usage"]
            self.usage_totals.update(
                prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"],
                cached_tokens=usage.get("prompt_tokens_details", {}).get("cached_tokens", 0))
        if request.stream:
            return _Reply(200, _to_sse(payload, request), content_type="text/event-stream")
        return _json_reply(200, payload, [("x-request-id", payload["id"])])

    def _cached_prefix_tokens(self, request: ChatRequest) -> int:
        """Tokens (bytes/4) of the longest prefix this prompt shares with a recent one."""
        prompt = "\n".join(str(m.get("content") or "") for m in request.messages
                            if isinstance(m, dict))
        with self._record_lock:
            best = max((len(os.path.commonprefix([prompt, p])) for p in self._recent_prompts),
                       default=0)
            self._recent_prompts.append(prompt)
        return best // 4

    def _completion_payload(
        self,
        request: ChatRequest,
        text: str,
        finish_reason: str | None,
        prompt_tokens: int,
        answer: Answer,
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        if request.mode == "tools" and request.tool is not None:
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": f"call_{next(self._ids):08x}",
                    "type": "function",
                    "function": {"name": request.tool.get("name", ""), "arguments": text},
                }
            ]
            default_reason = "stop" if request.tool_choice_is_named else "tool_calls"
        else:
            default_reason = "stop"
        completion_tokens = _estimate_tokens(len(text))
        choice: dict[str, Any] = {
            "index": 0,
            "message": message,
            "finish_reason": finish_reason or default_reason,
            "logprobs": None,
        }
        if request.wants_logprobs:
            logprob = answer.logprob if answer.logprob is not None else self.token_logprob
            choice["logprobs"] = _logprobs(text, logprob, request.top_logprobs)
        return {
            "id": f"chatcmpl-fake{next(self._ids):010d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model,
            "system_fingerprint": "fp_fake",
            "choices": [choice],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    # ---- admin API (used by FakeLLMProcess) -----------------------------------------------

    def _admin(self, request: _HttpRequest) -> _Reply:
        try:
            payload = json.loads(request.body) if request.body else {}
            return self._admin_action(request.method, request.path[len(_ADMIN_PREFIX) :], payload)
        except (ValueError, TypeError, KeyError) as exc:
            return _error_reply(400, f"bad admin request: {exc}")

    def _admin_action(self, method: str, action: str, payload: dict[str, Any]) -> _Reply:
        fault_opts = {k: payload.get(k) for k in ("retry_after", "hold")}
        if method == "GET" and action == "stats":
            return _json_reply(200, self.stats())
        if method == "GET" and action == "requests":
            return _json_reply(200, [r.to_json() for r in self.requests])
        if method != "POST":
            return _error_reply(404, f"unknown admin call {method} {action}")
        if action == "reset":
            self.reset()
        elif action == "latency":
            value = payload["latency"]
            self.latency = tuple(value) if isinstance(value, list) else value
        elif action == "fail_next":
            self.fail_next(int(payload.get("n", 1)), str(payload["kind"]), **fault_opts)
        elif action == "fail_when":
            self.fail_when(
                str(payload["match"]),
                str(payload["kind"]),
                times=payload.get("times"),
                where=payload.get("where", "user"),
                **fault_opts,
            )
        elif action == "fail_rate":
            self.fail_rate(
                str(payload["kind"]), float(payload["p"]), payload.get("seed"), **fault_opts
            )
        elif action == "clear_faults":
            self.clear_faults()
        else:
            return _error_reply(404, f"unknown admin call {method} {action}")
        return _json_reply(200, {"ok": True})


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _model_not_found(name: str) -> _Reply:
    return _error_reply(
        404,
        f"The model `{name}` does not exist or you do not have access to it.",
        code="model_not_found",
    )


def _context_length_error(window: int, tokens: int) -> _Reply:
    return _error_reply(
        400,
        f"This model's maximum context length is {window} tokens. However, your messages "
        f"resulted in {tokens} tokens. Please reduce the length of the messages.",
        code="context_length_exceeded",
        param="messages",
    )


def _to_sse(payload: dict[str, Any], request: ChatRequest) -> bytes:
    """The completion as a minimal SSE stream: one delta with everything, then finish."""
    choice = payload["choices"][0]
    message = dict(choice["message"])
    if "tool_calls" in message:
        message["tool_calls"] = [dict(c, index=i) for i, c in enumerate(message["tool_calls"])]
    base = {k: payload[k] for k in ("id", "created", "model", "system_fingerprint")}
    base["object"] = "chat.completion.chunk"
    chunks = [
        {
            **base,
            "choices": [
                {
                    "index": 0,
                    "delta": message,
                    "finish_reason": None,
                    "logprobs": choice["logprobs"],
                }
            ],
        },
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]},
    ]
    options = request.body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        chunks.append({**base, "choices": [], "usage": payload["usage"]})
    events = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks] + ["data: [DONE]\n\n"]
    return "".join(events).encode()


async def _write(writer: asyncio.StreamWriter, reply: _Reply, keep: bool) -> None:
    headers = [("content-type", reply.content_type), *reply.headers]
    writer.write(_encode_head(reply.status, headers, len(reply.body), keep) + reply.body)
    with contextlib.suppress(ConnectionError):
        await writer.drain()


def _install_signal_handlers(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    import signal

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)


# --------------------------------------------------------------------------------------------
# Subprocess mode
# --------------------------------------------------------------------------------------------


class FakeLLMProcess:
    """The fake server in a child process (``python -m testing.fake_llm_server``).

    Why: in a CPU-bound benchmark the client must own its GIL; a thread server would steal it.
    Control goes through the ``/_fake/`` admin API and mirrors :class:`FakeLLMServer`.
    The child exits when this process dies (it watches its stdin).
    """

    def __init__(
        self,
        model: str | Sequence[str] | None = "fake-model",
        *,
        latency: Latency = 0.0,
        api_key: str | None = None,
        responder: str | None = None,
        seed: int | None = None,
        max_recorded: int | None = 1000,
        extra_args: Sequence[str] = (),
    ) -> None:
        """``responder`` is an import path ``"package.module:callable"`` (a responder, or a
        zero-argument factory returning one when the attribute is a class)."""
        self.models = [model] if isinstance(model, str) else (list(model) if model else None)
        self.api_key = api_key
        self._args = _cli_args(self.models, latency, api_key, responder, seed, max_recorded)
        self._args += list(extra_args)
        self._latency = latency
        self._process: subprocess.Popen[str] | None = None
        self.base_url = ""

    def start(self) -> Self:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_REPO_ROOT), env.get("PYTHONPATH")]))
        command = [
            sys.executable,
            "-m",
            "testing.fake_llm_server",
            *self._args,
            "--exit-on-stdin-eof",
        ]
        self._process = subprocess.Popen(
            command,
            cwd=_REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if not line.startswith("http"):
            self.stop()
            raise RuntimeError(f"fake LLM server process did not start (got {line!r})")
        self.base_url = line
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(Exception):
            assert process.stdin is not None
            process.stdin.close()
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self.base_url.removesuffix("/v1")

    def _admin(self, method: str, action: str, payload: dict[str, Any] | None = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(
            f"{self.url}{_ADMIN_PREFIX}{action}",
            data=data,
            method=method,
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        return self._admin("GET", "stats")

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self._admin("GET", "requests")

    @property
    def total_requests(self) -> int:
        return int(self.stats()["total_requests"])

    @property
    def max_in_flight(self) -> int:
        return int(self.stats()["max_in_flight"])

    @property
    def latency(self) -> Latency:
        """The latency last set from this side (the child is the source of truth)."""
        return self._latency

    @latency.setter
    def latency(self, value: Latency) -> None:
        payload = list(value) if isinstance(value, tuple) else value
        self._admin("POST", "latency", {"latency": payload})
        self._latency = value

    def reset(self) -> None:
        self._admin("POST", "reset", {})

    def clear_faults(self) -> None:
        self._admin("POST", "clear_faults", {})

    def fail_next(
        self,
        n: int = 1,
        kind: str = "500",
        *,
        retry_after: float | None = None,
        hold: float | None = None,
    ) -> None:
        self._admin(
            "POST",
            "fail_next",
            {"n": n, "kind": str(kind), "retry_after": retry_after, "hold": hold},
        )

    def fail_when(
        self,
        match: str,
        kind: str,
        *,
        times: int | None = None,
        where: str = "user",
        retry_after: float | None = None,
        hold: float | None = None,
    ) -> None:
        self._admin(
            "POST",
            "fail_when",
            {
                "match": match,
                "kind": str(kind),
                "times": times,
                "where": where,
                "retry_after": retry_after,
                "hold": hold,
            },
        )

    def fail_rate(
        self,
        kind: str,
        p: float,
        seed: int | None = None,
        *,
        retry_after: float | None = None,
        hold: float | None = None,
    ) -> None:
        self._admin(
            "POST",
            "fail_rate",
            {"kind": str(kind), "p": p, "seed": seed, "retry_after": retry_after, "hold": hold},
        )


def _cli_args(
    models: list[str] | None,
    latency: Latency,
    api_key: str | None,
    responder: str | None,
    seed: int | None,
    max_recorded: int | None,
) -> list[str]:
    args = ["--port", "0"]
    args += [
        "--latency",
        ",".join(map(str, latency)) if isinstance(latency, tuple) else str(latency),
    ]
    if models is None:
        args.append("--any-model")
    for name in models or []:
        args += ["--model", name]
    if api_key is not None:
        args += ["--api-key", api_key]
    if responder is not None:
        args += ["--responder", responder]
    if seed is not None:
        args += ["--seed", str(seed)]
    if max_recorded is not None:
        args += ["--max-recorded", str(max_recorded)]
    return args


# --------------------------------------------------------------------------------------------
# Fixture helpers (conftest wraps them with pytest.fixture; this module does not import pytest)
# --------------------------------------------------------------------------------------------


def fake_llm_fixture(**kwargs: Any) -> Iterator[FakeLLMServer]:
    """A fresh thread server per use: ``fake_llm = pytest.fixture(fake_llm_fixture)``."""
    with FakeLLMServer(**kwargs) as server:
        yield server


def fake_llm_process_fixture(**kwargs: Any) -> Iterator[FakeLLMProcess]:
    """A server process: ``fake_llm_proc = pytest.fixture(scope="session")(...)``."""
    with FakeLLMProcess(**kwargs) as server:
        yield server


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _parse_latency(text: str) -> Latency:
    if "," in text:
        low, high = text.split(",", 1)
        return (float(low), float(high))
    return float(text)


def _load_responder(path: str) -> Responder:
    module_name, _, attribute = path.partition(":")
    target = getattr(importlib.import_module(module_name), attribute or "responder")
    return target() if inspect.isclass(target) else target


def _watch_stdin(server: FakeLLMServer) -> None:
    """Stop the server when the parent closes our stdin (or dies), so no orphan survives."""
    sys.stdin.read()
    loop, event = server._loop, server._stop_event
    if loop is not None and event is not None:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(event.set)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible LLM server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--model", action="append", help="accepted model (repeatable)")
    parser.add_argument("--any-model", action="store_true", help="accept every model name")
    parser.add_argument("--api-key", default=None)
    parser.add_argument(
        "--latency",
        type=_parse_latency,
        default=0.0,
        help="seconds, or MIN,MAX for a uniform range",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--responder", default=None, help="module:callable")
    parser.add_argument("--max-recorded", type=int, default=1000)
    parser.add_argument("--retry-after", type=float, default=1.0)
    parser.add_argument("--context-window", type=int, default=None)
    parser.add_argument(
        "--fail-rate",
        action="append",
        default=[],
        metavar="KIND:P",
        help="random fault rate, e.g. 429:0.05 (repeatable)",
    )
    parser.add_argument("--answer-fault", action="append", default=[], metavar="KIND:SHARE",
                        help="wrong answers, e.g. wrong_value:0.25 (testing/answer_faults.py)")
    parser.add_argument("--opinion-fault", action="append", default=[], metavar="KEY:SHARE",
                        help="answers that differ per sample and model, e.g. wrong_value:0.25 "
                             "(testing/opinion_faults.py)")
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    args = parser.parse_args(argv)

    models: list[str] | None = None if args.any_model else (args.model or ["fake-model"])
    server = FakeLLMServer(
        models,
        api_key=args.api_key,
        responder=_load_responder(args.responder) if args.responder else None,
        latency=args.latency,
        host=args.host,
        port=args.port,
        seed=args.seed,
        retry_after=args.retry_after,
        context_window=args.context_window,
        max_recorded=args.max_recorded,
    )
    for spec in args.fail_rate:
        kind, _, probability = spec.rpartition(":")
        server.fail_rate(kind, float(probability), args.seed)
    if args.answer_fault:
        from testing.answer_faults import with_answer_faults

        server.responder = with_answer_faults(server.responder, args.answer_fault, args.seed)
    if args.opinion_fault:
        from testing.opinion_faults import with_opinion_faults

        server.responder = with_opinion_faults(server.responder, args.opinion_fault, args.seed,
                                               primary=(args.model or ["fake-model"])[0])

    def announce(ready: FakeLLMServer) -> None:
        print(ready.base_url, flush=True)
        if args.exit_on_stdin_eof:
            threading.Thread(target=_watch_stdin, args=(ready,), daemon=True).start()

    server.run(on_ready=announce)


if __name__ == "__main__":
    main()
