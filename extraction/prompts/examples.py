"""Worked examples in an instruction block: one spelling for every example, and rendering them
within a token budget (the newest that fit, since they reflect the latest corrections)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from extraction.errors import ValidationError
from extraction.prompts.budgets import estimate_tokens
from extraction.prompts.delimiters import escape_delimiters

__all__ = ["EXAMPLES_BUDGET_TOKENS", "normalize_example", "render_examples"]

#: Room for worked examples in one variable's block (estimated tokens).
EXAMPLES_BUDGET_TOKENS = 400
_EXCERPT_MAX_CHARS = 300

_EXAMPLE_ALIASES = {
    "excerpt": ("excerpt", "evidence", "quote"),
    "wrong_value": ("wrong_value", "wrong", "extracted_value", "value"),
    "right_value": ("right_value", "right", "corrected_value", "correct_value"),
    "comment": ("comment", "note", "why"),
}


def normalize_example(example: Mapping[str, Any]) -> dict[str, Any]:
    """One worked example as ``{excerpt, wrong_value, right_value, comment}``.

    Refinement may name the fields slightly differently (``wrong`` / ``corrected_value``);
    they are accepted and stored under one spelling so blocks render the same way.
    """
    if not isinstance(example, Mapping):
        raise ValidationError(f"a worked example must be a mapping, got {type(example).__name__}",
                              field="examples")
    out: dict[str, Any] = {}
    for key, aliases in _EXAMPLE_ALIASES.items():
        out[key] = next((example[a] for a in aliases if a in example), None)
    out["excerpt"] = str(out["excerpt"] or "")
    out["comment"] = str(out["comment"] or "")
    if not out["excerpt"] and not out["comment"] and out["right_value"] is None \
            and out["wrong_value"] is None:
        raise ValidationError("a worked example needs an excerpt, a value or a comment",
                              field="examples")
    return out


def _render_example(example: Mapping[str, Any]) -> str:
    excerpt = " ".join(escape_delimiters(example["excerpt"]).split())
    if len(excerpt) > _EXCERPT_MAX_CHARS:
        excerpt = excerpt[: _EXCERPT_MAX_CHARS - 1].rstrip() + "…"
    lines = []
    if excerpt:
        lines.append(f"- Excerpt: {json.dumps(excerpt, ensure_ascii=False)}")
    else:
        lines.append("- (no excerpt)")
    lines.append(f"  Wrong answer: {json.dumps(example['wrong_value'], ensure_ascii=False)}")
    lines.append(f"  Right answer: {json.dumps(example['right_value'], ensure_ascii=False)}")
    comment = " ".join(escape_delimiters(example["comment"]).split())
    if comment:
        lines.append(f"  Why: {comment}")
    return "\n".join(lines)


def render_examples(
    examples: Sequence[Mapping[str, Any]], budget_tokens: int = EXAMPLES_BUDGET_TOKENS
) -> str:
    """Worked examples as text, keeping the most recent ones that fit ``budget_tokens``.

    ``examples`` are oldest first (refinement appends); the newest are kept because they
    reflect the latest corrections, and they are shown oldest first among those kept.
    Returns "" when none fits.
    """
    kept: list[str] = []
    used = 0
    for example in reversed([normalize_example(e) for e in examples]):
        text = _render_example(example)
        cost = estimate_tokens(text) + 1
        if used + cost > budget_tokens:
            break
        kept.append(text)
        used += cost
    if not kept:
        return ""
    header = "Worked examples (corrections from a human review; answer like the right answers):"
    return "\n".join([header, *reversed(kept)])
