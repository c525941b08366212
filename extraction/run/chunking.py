"""Long documents: split into overlapping chunks that fit the token budget, merge the answers.

**Splitting.** Tokens are estimated as characters / 4 (as everywhere in extractflow; no
tokenizer is needed offline). A chunk holds at most ``max_tokens`` × 4 characters and ends at
the best boundary in its last fifth: a blank line, else a line break, else a sentence end, else
a space (a hard cut only for text without any). The next chunk starts ``overlap_tokens`` × 4
characters before the previous end (moved forward to the next word start), so a fact that
straddles a boundary is whole in at least one chunk when it is shorter than the overlap. The
overlap is capped at half a chunk so every chunk advances. Offsets are into the full text.

**Merging, per variable** (the rule the extractor applies to the chunks' answers):

1. if any chunk *found* a value, the answer is the found one that is **grounded** (its quote is
   in the document) before an ungrounded one, then the one with the **higher confidence**, then
   the **earliest** (smallest evidence offset, then chunk order) — the first statement in a
   document is usually the main one (e.g. the abstract);
2. otherwise, if any chunk **failed** (provider error after retries, invalid output), the
   variable failed: absence cannot be claimed for text that was not read;
3. otherwise every chunk said *not found*, and so does the merge, with the **lowest** of the
   chunks' confidences (the weakest absence claim bounds the claim for the whole document).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "CHARS_PER_TOKEN",
    "Chunk",
    "ChunkAnswer",
    "estimate_tokens",
    "merge_answers",
    "split_text",
]

CHARS_PER_TOKEN = 4
_BOUNDARIES = (re.compile(r"\n\s*\n"), re.compile(r"\n"), re.compile(r"[.!?][\"')\]]*\s"),
               re.compile(r"\s"))


def estimate_tokens(text: str) -> int:
    """Tokens in ``text``, estimated as characters / 4 (rounded up)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@dataclass(frozen=True)
class Chunk:
    """A piece of a document: ``text == document_text[start:end]``."""

    index: int
    start: int
    end: int
    text: str


def _cut(text: str, start: int, limit: int) -> int:
    """Where a chunk starting at ``start`` should end (exclusive), at most ``limit``."""
    if limit >= len(text):
        return len(text)
    floor = start + max(1, (limit - start) * 4 // 5)
    for pattern in _BOUNDARIES:
        best = -1
        for match in pattern.finditer(text, floor, limit):
            best = match.end()
        if best > start:
            return best
    return limit


def split_text(text: str, max_tokens: int, overlap_tokens: int = 0) -> list[Chunk]:
    """Split ``text`` into overlapping chunks of at most ``max_tokens`` estimated tokens.

    A text that fits comes back as one chunk. ``max_tokens`` must be positive.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    size = max_tokens * CHARS_PER_TOKEN
    overlap = min(max(0, overlap_tokens) * CHARS_PER_TOKEN, size // 2)
    if len(text) <= size:
        return [Chunk(0, 0, len(text), text)]
    chunks: list[Chunk] = []
    start = 0
    while start < len(text):
        end = _cut(text, start, start + size)
        chunks.append(Chunk(len(chunks), start, end, text[start:end]))
        if end >= len(text):
            break
        following = max(end - overlap, start + 1)
        if overlap:
            space = re.compile(r"\s").search(text, following, end)
            if space is not None:
                following = space.end()
        start = following
    return chunks


@dataclass
class ChunkAnswer:
    """One chunk's answer for one variable, with what the merge rule looks at.

    ``payload`` is whatever the caller needs back (the extractor keeps the parsed answer and
    its grounding there).
    """

    chunk_index: int
    status: Literal["found", "not_found", "failed"]
    confidence: float | None = None
    grounded: bool | None = None
    position: int | None = None
    payload: Any = None


def merge_answers(answers: Sequence[ChunkAnswer]) -> ChunkAnswer:
    """The answer for the whole document (see the module docstring for the rule)."""
    if not answers:
        raise ValueError("nothing to merge")
    found = [a for a in answers if a.status == "found"]
    if found:
        return min(found, key=lambda a: (
            not a.grounded,
            -(a.confidence if a.confidence is not None else 0.0),
            a.position if a.position is not None else math.inf,
            a.chunk_index,
        ))
    failed = [a for a in answers if a.status == "failed"]
    if failed:
        return failed[0]
    return min(answers, key=lambda a: (
        a.confidence if a.confidence is not None else math.inf, a.chunk_index))
