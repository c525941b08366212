"""The stored confidence of a cell: the model's self-report, checked against grounding and logprobs.

Formula (every factor is in 0..1, so the result is too; rounded to 4 decimals)::

    confidence = self_reported × grounding_factor × consistency_factor × support_factor
                 × token_probability

* ``self_reported`` — the ``confidence`` the model gave for this variable (percentages are
  already turned into fractions by the response model). Stored as well, unchanged, in
  ``self_confidence``, so the two can be compared.
* ``grounding_factor`` — 1.0 when the evidence quote was found in the document;
  :data:`UNGROUNDED_FACTOR` (0.5) when a *found* answer has no quote or a quote that is not in
  the document. Such a cell is also flagged (``grounded = False``). Halving rather than zeroing:
  a paraphrased quote of a right answer is common with small models, an invented quote is not
  the only reason for a miss; halving pushes the cell under any sensible review threshold.
* ``consistency_factor`` — :data:`CONTRADICTION_FACTOR` (0.5) when the model said
  ``not_found`` yet gave a value (the value is kept, see :mod:`extraction.llm.response_models`),
  else 1.0.
* ``support_factor`` — :data:`UNSUPPORTED_FACTOR` (0.5) when the value cannot be read from its
  own quote (:mod:`extraction.run.support`: the quote states 356, the value is 363), else 1.0
  (supported, or not checkable). Stored beside the cell as ``support`` and ``support_reason``.
  0.5 by measurement (``python -m benchmarks.bench_confidence``): any factor below 1 ranks the
  flagged cells first when self-reports are alike, and 0.5 still pushes a 0.95 self-report
  under a 0.5 one, while a right value that the check misreads (a paraphrase the rules do not
  know) loses no more than half. It stacks with the grounding factor: a value that is neither
  in its quote nor with a quote that is in the document keeps a quarter.
* ``token_probability`` — only when logprobs were requested (``llm_request_logprobs``) and the
  server returned them: the mean, over the completion's tokens, of ``exp(logprob)``, i.e. the
  average probability the model gave to the tokens it wrote. Servers that do not return them
  (and tool-call answers on OpenAI) give no factor (1.0). It is per call, so in per_document
  mode every cell of the call shares it — a coarse signal that mostly catches a model that was
  unsure throughout.

A **not_found** cell carries the confidence of the *absence* claim: the model's self-reported
confidence (× token probability), with no grounding factor since there is nothing to quote.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = [
    "CONTRADICTION_FACTOR",
    "UNGROUNDED_FACTOR",
    "UNSUPPORTED_FACTOR",
    "combine",
    "mean_token_probability",
]

UNGROUNDED_FACTOR = 0.5
CONTRADICTION_FACTOR = 0.5
UNSUPPORTED_FACTOR = 0.5


def mean_token_probability(logprobs: Iterable[float]) -> float | None:
    """Mean of ``exp(logprob)`` over tokens; None when there are none."""
    probabilities = [math.exp(lp) for lp in logprobs if lp is not None and math.isfinite(lp)]
    if not probabilities:
        return None
    return min(1.0, sum(probabilities) / len(probabilities))


def combine(
    self_reported: float | None,
    *,
    found: bool,
    grounded: bool | None,
    token_probability: float | None = None,
    contradicted: bool = False,
    unsupported: bool = False,
    unsupported_factor: float = UNSUPPORTED_FACTOR,
) -> float | None:
    """The stored confidence (see the module docstring for the formula).

    Args:
        self_reported: The model's confidence in 0..1 (None → None: nothing to combine).
        found: Whether the answer has a value (False: a not_found answer).
        grounded: Whether the evidence quote was located in the document.
        token_probability: Mean token probability of the call, if the server gave logprobs.
        contradicted: The model's status said not_found although it gave a value.
        unsupported: The value cannot be read from its own evidence quote.
        unsupported_factor: What an unsupported value is multiplied by (benchmarks set 1.0
            to measure the confidence without the check).
    """
    if self_reported is None:
        return None
    value = min(1.0, max(0.0, float(self_reported)))
    if found and not grounded:
        value *= UNGROUNDED_FACTOR
    if found and contradicted:
        value *= CONTRADICTION_FACTOR
    if found and unsupported:
        value *= unsupported_factor
    if token_probability is not None:
        value *= min(1.0, max(0.0, token_probability))
    return round(value, 4)
