"""Answers wrong the way small models are wrong, for the fake LLM server.

Why: HTTP faults (429, timeouts, bad JSON) test the plumbing; they say nothing about whether
the stored confidence ranks *wrong values* first. These faults do: a wrapper around any
responder rewrites a share of its answered values while the answer keeps its shape, its
status and its self-reported confidence:

* ``wrong_value`` — a plausible wrong value beside the *right* quote (356 enrolled → 363;
  "Phase 2" → "Phase 3"; true → false; a date a few months off; a TEXT value taken from
  another sentence of the document). Grounding cannot see it: the quote is in the document.
* ``wrong_quote`` — the right value with the quote of *another* sentence of the document
  (still grounded, but it does not state the value).

Which cells are hit is decided per (seed, document, variable), not per request order, so
concurrent runs rewrite the same cells and a benchmark is repeatable. ``faulted`` counts
what was rewritten per kind.

Use it in a thread server (``server.responder = AnswerFaults(server.responder,
wrong_value=0.25)``) or in a server process with ``--answer-fault wrong_value:0.25``.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

from testing.fake_llm_server import Answer, ChatRequest, Responder

__all__ = ["ANSWER_FAULT_KINDS", "AnswerFaults", "with_answer_faults"]

ANSWER_FAULT_KINDS = ("wrong_value", "wrong_quote")

_ISO = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]?")
_WORD = re.compile(r"[A-Za-z][A-Za-z-]+")


class AnswerFaults:
    """Wraps a responder; rewrites a share of the values (or quotes) it answers."""

    def __init__(self, responder: Responder, *, wrong_value: float = 0.0,
                 wrong_quote: float = 0.0, seed: int | None = 0) -> None:
        for name, share in (("wrong_value", wrong_value), ("wrong_quote", wrong_quote)):
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be a share between 0 and 1, not {share!r}")
        self.responder = responder
        self.wrong_value = wrong_value
        self.wrong_quote = wrong_quote
        self.seed = seed or 0
        self.faulted: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, request: ChatRequest) -> Any:
        result = self.responder(request)
        answer = result.value if isinstance(result, Answer) else result
        schema = request.schema or {}
        if not isinstance(answer, dict):
            return result
        document = request.document
        if _is_variable_answer(answer):  # per_variable: the answer is the variable's object
            name = str(schema.get("title") or (request.tool or {}).get("name") or "")
            self._maybe_fault(name, answer, schema, schema, document)
        else:  # per_document: one object per variable, keyed by its name
            properties = schema.get("properties") or {}
            for name, item in answer.items():
                if isinstance(item, dict) and _is_variable_answer(item):
                    node = _resolve(properties.get(name, {}), schema)
                    self._maybe_fault(name, item, node, schema, document)
        return result

    def _maybe_fault(self, name: str, item: dict[str, Any], node: dict[str, Any],
                     root: dict[str, Any], document: str) -> None:
        if item.get("value") is None:
            return  # an absence stays an absence
        digest = hashlib.sha256(f"{self.seed}:{name}:{document}".encode()).hexdigest()
        rng = random.Random(digest)
        draw_value, draw_quote = rng.random(), rng.random()
        if draw_value < self.wrong_value:
            value_schema = _resolve((node.get("properties") or {}).get("value", {}), root)
            wrong = _wrong_value(item["value"], _enum_options(value_schema, root), document,
                                 item.get("evidence"), rng)
            if wrong is not None and wrong != item["value"]:
                item["value"] = wrong
                self._count("wrong_value")
        elif draw_quote < self.wrong_quote:
            quote = _other_sentence(document, item.get("evidence"), item["value"], rng)
            if quote is not None:
                item["evidence"] = quote
                self._count("wrong_quote")

    def _count(self, kind: str) -> None:
        with self._lock:
            self.faulted[kind] += 1


def with_answer_faults(responder: Responder, specs: Sequence[str],
                       seed: int | None = None) -> AnswerFaults:
    """``AnswerFaults`` from command-line specs such as ``["wrong_value:0.25"]``."""
    shares: dict[str, float] = {}
    for spec in specs:
        kind, _, share = spec.rpartition(":")
        if kind not in ANSWER_FAULT_KINDS:
            raise ValueError(f"unknown answer fault {kind!r}: use one of "
                             f"{', '.join(ANSWER_FAULT_KINDS)} as KIND:SHARE")
        shares[kind] = float(share)
    return AnswerFaults(responder, seed=seed, **shares)


# ------------------------------------------------------------------ schema helpers


def _is_variable_answer(item: dict[str, Any]) -> bool:
    return "value" in item and any(k in item for k in ("evidence", "quote"))


def _resolve(node: Any, root: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (``#/$defs/X``) once or twice; anything else as it is."""
    for _ in range(4):
        if not isinstance(node, dict):
            return {}
        ref = node.get("$ref")
        if not (isinstance(ref, str) and ref.startswith("#/")):
            return node
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        node = target
    return node if isinstance(node, dict) else {}


def _enum_options(node: dict[str, Any], root: dict[str, Any]) -> list[Any]:
    """The enum values a value schema allows (through anyOf, items and $ref)."""
    node = _resolve(node, root)
    if isinstance(node.get("enum"), list):
        return [o for o in node["enum"] if o is not None]
    out: list[Any] = []
    for branch in (node.get("anyOf") or node.get("oneOf") or []):
        out += _enum_options(branch, root)
    if isinstance(node.get("items"), dict):
        out += _enum_options(node["items"], root)
    return out


# ------------------------------------------------------------------ wrong values


def _wrong_number(value: float, rng: random.Random) -> float:
    spread = max(3, round(abs(value) * 0.1))
    delta = rng.randint(1, spread) * rng.choice((-1, 1))
    wrong = value + delta
    if wrong < 0 <= value:
        wrong = value + abs(delta)
    return float(int(wrong)) if float(value).is_integer() else round(wrong, 2)


def _wrong_date(value: str, rng: random.Random) -> str | None:
    match = _ISO.match(value)
    if match is None:
        return None
    year, month, day = (int(p) if p else None for p in match.groups())
    if month is None:
        return str(year + rng.choice((-2, -1, 1, 2)))
    month0 = (month - 1 + rng.randint(1, 11)) % 12
    text = f"{year:04d}-{month0 + 1:02d}"
    return text if day is None else f"{text}-{min(day, 28):02d}"


def _sentences(document: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(document) if len(s.strip()) > 12]


def _other_sentence(document: str, quote: Any, value: Any, rng: random.Random) -> str | None:
    """A sentence of the document that is neither the quote nor mentions the value."""
    shown = str(value).casefold()
    folded_quote = str(quote or "").casefold()
    choices = [s for s in _sentences(document)
               if s.casefold() not in folded_quote and folded_quote not in s.casefold()
               and shown not in s.casefold()]
    return rng.choice(choices) if choices else None


def _wrong_value(value: Any, options: list[Any], document: str, quote: Any,
                 rng: random.Random) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return _wrong_number(float(value), rng)
    if isinstance(value, list):
        others = [o for o in options if o not in value]
        return [rng.choice(others)] if others else None
    if not isinstance(value, str):
        return None
    if options:
        others = [o for o in options if o != value and o != "other"]
        return rng.choice(others) if others else None
    if _ISO.match(value):
        return _wrong_date(value, rng)
    sentence = _other_sentence(document, quote, value, rng)
    if sentence is None:
        return None
    words = _WORD.findall(sentence)
    return " ".join(words[:6]) if words else None
