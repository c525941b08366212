"""Wrong answers that differ per sample and per model, so second opinions can be measured.

:class:`~testing.answer_faults.AnswerFaults` decides per (seed, document, variable): every
request for a cell gets the same wrong value, so asking again would always agree. Real models
are not like that: a model that is wrong by guessing tends to guess differently when sampled at
a temperature, and another model is wrong in other places. :class:`OpinionFaults` keeps the
first answer exactly as ``AnswerFaults`` gives it, and varies the others:

* **the first answer** — a request of the primary model without a ``seed``: the cell is wrong
  with probability ``wrong_value`` (the same cells and values as ``AnswerFaults``);
* **a sample** — a request of the primary model with a ``seed`` (what
  :mod:`extraction.run.second_opinion` sends): where the first answer is wrong, the sample
  repeats that wrong value with probability ``repeat`` (a model confidently wrong), else it
  answers right or another wrong value, half and half; where the first answer is right, the
  sample is wrong with probability ``noise``;
* **a challenger** — any other model name: wrong on its own cells with probability
  ``challenger``, independent of the first model.

Every draw is seeded by (seed, model, sample seed, document, variable), so runs repeat.
``faulted`` counts rewrites per kind (``wrong_value``, ``sample_wrong``, ``challenger_wrong``).

Use it in a thread server (``server.responder = OpinionFaults(oracle, wrong_value=0.25)``) or
in a server process with ``--opinion-fault wrong_value:0.25 --opinion-fault repeat:0.3``.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Sequence
from typing import Any

from testing.answer_faults import AnswerFaults, _enum_options, _resolve, _wrong_value
from testing.fake_llm_server import ChatRequest, Responder

__all__ = ["OPINION_FAULT_KEYS", "OpinionFaults", "with_opinion_faults"]

OPINION_FAULT_KEYS = ("wrong_value", "repeat", "noise", "challenger")


class OpinionFaults(AnswerFaults):
    """``AnswerFaults`` for the first answer; samples and challengers vary (module docstring)."""

    def __init__(self, responder: Responder, *, wrong_value: float = 0.0, repeat: float = 0.3,
                 noise: float = 0.05, challenger: float = 0.1, primary: str = "fake-model",
                 seed: int | None = 0) -> None:
        super().__init__(responder, wrong_value=wrong_value, seed=seed)
        for name, share in (("repeat", repeat), ("noise", noise), ("challenger", challenger)):
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be a share between 0 and 1, not {share!r}")
        self.repeat, self.noise, self.challenger = repeat, noise, challenger
        self.primary = primary
        self._request = threading.local()

    def __call__(self, request: ChatRequest) -> Any:
        self._request.current = request
        return super().__call__(request)

    def _maybe_fault(self, name: str, item: dict[str, Any], node: dict[str, Any],
                     root: dict[str, Any], document: str) -> None:
        request: ChatRequest = self._request.current
        sample = request.body.get("seed")
        if request.model == self.primary and sample is None:
            super()._maybe_fault(name, item, node, root, document)
            return
        if item.get("value") is None:
            return
        right = item["value"]
        first = dict(item)
        super()._maybe_fault(name, first, node, root, document)  # what the first answer was
        first_wrong = first["value"] != right
        with self._lock:
            self.faulted["wrong_value"] -= int(first_wrong)  # that rewrite was only a look
        own = random.Random(hashlib.sha256(
            f"{self.seed}:{request.model}:{sample}:{name}:{document}".encode()).hexdigest())
        if request.model != self.primary:
            wrong, kind = own.random() < self.challenger, "challenger_wrong"
        elif first_wrong and own.random() < self.repeat:
            item["value"] = first["value"]
            self._count("sample_wrong")
            return
        else:
            wrong = own.random() < (0.5 if first_wrong else self.noise)
            kind = "sample_wrong"
        if not wrong:
            return
        value_schema = _resolve((node.get("properties") or {}).get("value", {}), root)
        value = _wrong_value(right, _enum_options(value_schema, root), document,
                             item.get("evidence"), own)
        if value is not None and value != right:
            item["value"] = value
            self._count(kind)


def with_opinion_faults(responder: Responder, specs: Sequence[str], seed: int | None = None,
                        primary: str = "fake-model") -> OpinionFaults:
    """``OpinionFaults`` from command-line specs such as ``["wrong_value:0.25", "repeat:0.3"]``."""
    shares: dict[str, float] = {}
    for spec in specs:
        key, _, share = spec.rpartition(":")
        if key not in OPINION_FAULT_KEYS:
            raise ValueError(f"unknown opinion fault {key!r}: use one of "
                             f"{', '.join(OPINION_FAULT_KEYS)} as KEY:SHARE")
        shares[key] = float(share)
    return OpinionFaults(responder, seed=seed, primary=primary, **shares)
