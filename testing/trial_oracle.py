"""A responder that answers the demo corpus as a careful model would: true value, right sentence.

Why: measuring whether confidence ranks wrong values first needs a server whose answers are
known to be right (so that :mod:`testing.answer_faults` can make a known share wrong). The
demo corpus (:mod:`examples.clinical_trials_corpus`) knows every report's truth; this oracle
recognises which report a request carries (by its paragraphs, whitespace-folded, so parsed
PDFs and DOCX files are recognised too) and answers each variable of the demo codebook with
the true value and, as evidence, the sentence of the report that states it. Variables the
report leaves unstated get ``not_found``. Every answer reports the same self-confidence
(default 0.95), like the over-confident small models the benchmark is about.

Server process: ``--responder testing.trial_oracle:TrialOracle``.
"""

from __future__ import annotations

import random
import re
from typing import Any

from examples.clinical_trials_corpus import RECORDS, TrialRecord, _paragraphs
from testing.fake_llm_server import ChatRequest

__all__ = ["SpreadOracle", "TrialOracle"]

_SPACE = re.compile(r"\s+")
_SENTENCE_BREAK = re.compile(r"(?<=\.)\s+(?=[A-Z])")
#: Words that find, in a report's sentences, the one stating each variable.
_MARKERS = {
    "condition": ("The trial studies",),
    "phase": ("This is a Phase", "no drug development phase"),
    "sponsor_type": ("funded by",),
    "enrollment": ("participants were enrolled.",),
    "start_date": ("first participant was enrolled in",),
    "randomized": ("randomly assigned", "not randomised"),
    "primary_outcome": ("The primary outcome was",),
}


def _fold(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


class TrialOracle:
    """Answers per_document and per_variable requests about the demo reports truthfully."""

    def __init__(self, confidence: float = 0.95,
                 spread: tuple[float, float] | None = None) -> None:
        """``spread``: draw each answer's self-confidence from this range instead (fixed per
        report × variable), for a model whose self-report says nothing about correctness."""
        self.confidence = confidence
        self.spread = spread
        self._reports = [(record, [_fold(p) for p in _paragraphs(record, i)])
                         for i, record in enumerate(RECORDS)]

    def __call__(self, request: ChatRequest) -> Any:
        schema = request.schema or {}
        report = self._report(request.document)
        properties = schema.get("properties") or {}
        if "value" in properties:  # per_variable: the schema is the variable's answer
            name = str(schema.get("title") or (request.tool or {}).get("name") or "")
            return self._answer(name, report)
        return {name: self._answer(name, report) for name in properties}

    def _report(self, document: str) -> tuple[TrialRecord, list[str]] | None:
        folded = _fold(document)
        best, best_score = None, 0
        for record, paragraphs in self._reports:
            score = sum(p in folded for p in paragraphs)
            if score > best_score:
                best, best_score = (record, paragraphs), score
        return best

    def _answer(self, name: str, report: tuple[TrialRecord, list[str]] | None) -> dict:
        if report is None:
            return {"status": "not_found", "evidence": None, "value": None,
                    "confidence": self.confidence}
        record, paragraphs = report
        confidence = self._confidence(name, record)
        absent = {"status": "not_found", "evidence": None, "value": None,
                  "confidence": confidence}
        value = self._value(name, record)
        if value is None:
            return absent
        if name == "trial_title":
            quote = paragraphs[0]
        else:
            sentences = [s for p in paragraphs for s in _SENTENCE_BREAK.split(p)]
            quote = next((s for s in sentences
                          if any(m in s for m in _MARKERS.get(name, ()))), None)
        if quote is None:
            return absent
        return {"status": "found", "evidence": quote, "value": value, "confidence": confidence}

    @staticmethod
    def _value(name: str, record: TrialRecord) -> Any:
        return getattr(record, name, None) if name != "filename" else None

    def _confidence(self, name: str, record: TrialRecord) -> float:
        if self.spread is None:
            return self.confidence
        low, high = self.spread
        rng = random.Random(f"{record.filename}:{name}")
        return round(rng.uniform(low, high), 3)


class SpreadOracle(TrialOracle):
    """The oracle with self-confidence spread over 0.5–1.0 (a class, so a server process can
    load it as ``--responder testing.trial_oracle:SpreadOracle``)."""

    def __init__(self) -> None:
        super().__init__(spread=(0.5, 1.0))
