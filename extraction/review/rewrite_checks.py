"""Whether a rewritten instruction block is still an instruction for the same variable.

A small model asked to rewrite a prompt may return a description of the documents ("The
document contains a short narrative…"), change the variable's type, or drift to another
variable. Such a rewrite is refused with the reason, before any held-out scoring spends calls
on it. The checks are deliberately plain: they catch rewrites that are not instructions at all;
whether an instruction is *better* is the held-out check's job (:mod:`extraction.review.holdout`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["rewrite_problem"]

#: Words that make a line an instruction (imperatives and obligations an extraction rule uses).
_INSTRUCTION = re.compile(
    r"\b(answer|report|use|give|extract|copy|return|take|choose|pick|count|ignore|look|quote|"
    r"write|convert|treat|prefer|include|exclude|leave|do not|don't|never|only|must|should|"
    r"if|when|unless)\b", re.IGNORECASE)
#: How a line describing the documents (rather than instructing) starts.
_DESCRIPTION = re.compile(r"^\s*[-*]?\s*(the|this|these|each)\s+(document|documents|report|"
                          r"reports|codebook|text|study|trial)s?\b", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9]+")
_STOP = {"the", "a", "an", "of", "in", "to", "and", "or", "for", "is", "as", "at", "by", "on"}


def _words(text: str) -> set[str]:
    """Content words cut to 5 letters, so "enrolled" meets "enrollment"."""
    return {w[:5] for w in _WORD.findall(text.casefold()) if w not in _STOP and len(w) > 2}


def rewrite_problem(block: str, current_block: str, *, name: str, label: str,
                    categories: Sequence[str] = ()) -> str | None:
    """Why ``block`` cannot replace ``current_block`` (None when it can)."""
    lines = [line.strip() for line in block.splitlines() if line.strip()]
    body = lines[1:] if lines and f"`{name}`" in lines[0] else lines
    if not any(_INSTRUCTION.search(line) for line in body):
        return "the rewrite is not an instruction: it tells the extraction model nothing to do"
    old = {line.strip() for line in current_block.splitlines()}
    added = [line for line in body if line not in old]
    described = [line for line in added if _DESCRIPTION.match(line)
                 and not _INSTRUCTION.search(line)]
    if described:
        return f"the rewrite is not an instruction: it describes the documents ({described[0]!r})"
    lost = [c for c in categories if c not in block]
    if lost:
        return (f"the rewrite dropped the categor{'y' if len(lost) == 1 else 'ies'} "
                f"{', '.join(repr(c) for c in lost)}")
    type_line = next((line.strip() for line in current_block.splitlines()
                      if line.strip().startswith("Type:")), None)
    if type_line is not None and len(type_line.split()) > 1:
        kind = type_line.split()[1]  # "Type: NUMBER (a number)" -> NUMBER
        stated = [line for line in lines if line.startswith("Type:")]
        if not any(kind in line.split() for line in stated):
            return (f"the rewrite changed the variable's meaning: it dropped or altered its "
                    f"type line {type_line!r}")
    topic = _words(label) | _words(name.replace("_", " "))
    if topic and not topic & _words(" ".join(body)):
        return (f"the rewrite changed the variable's meaning: it no longer mentions "
                f"{label or name!r}")
    return None
