"""The held-out check of refinement: a rewritten prompt must not score worse than the current one.

Reviewed cells are split **by document** into a learning part (its corrections are what the
rewrite learns from and become its worked examples) and a held-out part (never shown to the
rewriting model). A rewrite is then scored on the held-out documents: the variables are
extracted again with the rewritten blocks (the other variables keep theirs, as in a run), in the
project's extraction mode, and each value is compared with what the reviewer said is right (the
extracted value when confirmed, the corrected value otherwise). The current prompt's score is
the reviewers' verdicts on those same cells, which it produced. The rewrite becomes current only
when it scores at least as well; otherwise it is refused with both scores (``force`` keeps it).

Why by document: the worked examples quote their documents, so a rewrite checked on a cell of a
document it has seen could pass by recognising the text rather than by a better rule.

The split is deterministic (documents ordered by a hash of their file name, then id), so the
same reviews give the same split on every run; with fewer than :data:`MIN_DOCUMENTS` reviewed
documents there is no held-out part and the check is skipped (two documents to learn from is the
least worth a rewrite).
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from config.settings import Settings
from extraction.review.feedback import FeedbackView
from extraction.run.results import CellResult, DocumentInput, PromptInfo, VariableInfo

__all__ = [
    "HELD_OUT_SHARE",
    "MIN_DOCUMENTS",
    "Extract",
    "HeldOutScore",
    "extractor_check",
    "split_documents",
]

#: Share of the reviewed documents kept out of the learning part (rounded up).
HELD_OUT_SHARE = 1 / 3
#: Fewest reviewed documents with which a held-out part is kept (two to learn, two to check).
MIN_DOCUMENTS = 4

#: Extracts ``variables`` from each document with ``prompts`` → cells by (document, variable).
Extract = Callable[
    [Sequence[DocumentInput], Sequence[VariableInfo], Mapping[uuid.UUID, PromptInfo], str],
    Awaitable[dict[tuple[uuid.UUID, uuid.UUID], CellResult]],
]


def split_documents(views: Sequence[FeedbackView],
                    share: float = HELD_OUT_SHARE) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """(learning, held-out) document ids of the reviewed cells ``views``."""
    names = {v.document_id: v.filename for v in views}
    documents = sorted(names, key=lambda d: (hashlib.sha256(names[d].encode()).hexdigest(),
                                             str(d)))
    if len(documents) < MIN_DOCUMENTS:
        return set(documents), set()
    held = max(1, min(len(documents) - 1, math.ceil(len(documents) * share)))
    return set(documents[held:]), set(documents[:held])


@dataclass
class HeldOutScore:
    """How the current and the rewritten prompt of one variable do on the held-out cells."""

    cells: int = 0
    current: int = 0
    refined: int = 0
    failed: int = 0  # re-extractions that failed (count as wrong)
    documents: list[str] = field(default_factory=list)

    @property
    def checked(self) -> bool:
        return self.cells > 0

    @property
    def passed(self) -> bool:
        return self.refined >= self.current

    def describe(self) -> str:
        if not self.checked:
            return "no held-out cells of this variable: not checked"
        return (f"held-out check on {self.cells} cell(s) of {len(self.documents)} document(s): "
                f"{self.refined}/{self.cells} right with the refined prompt, "
                f"{self.current}/{self.cells} with the current one")

    def to_dict(self) -> dict[str, Any]:
        return {"cells": self.cells, "current": self.current, "refined": self.refined,
                "failed": self.failed, "documents": self.documents, "passed": self.passed}


def extractor_check(settings: Settings, *, model: str | None = None) -> Extract:
    """The default :data:`Extract`: the run's own Extractor and LLM client, from settings."""

    async def extract(documents: Sequence[DocumentInput], variables: Sequence[VariableInfo],
                      prompts: Mapping[uuid.UUID, PromptInfo],
                      mode: str) -> dict[tuple[uuid.UUID, uuid.UUID], CellResult]:
        from extraction.llm.client import LLMClient
        from extraction.run.extractor import Extractor

        client = LLMClient.from_settings(settings, model=model)
        try:
            extractor = Extractor(client, mode=mode, settings=settings)  # type: ignore[arg-type]
            cells: dict[tuple[uuid.UUID, uuid.UUID], CellResult] = {}
            for document in documents:  # one at a time: a small local server serves one
                result = await extractor.extract_document(document, variables, prompts)
                cells.update({(document.id, c.variable_id): c for c in result.cells})
            return cells
        finally:
            await client.aclose()

    return extract
