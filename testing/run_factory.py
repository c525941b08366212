"""Projects and documents for run tests, and the settings that point runs at the fake LLM.

Documents are inserted as parsed rows (status ok, text, page map) with values the fake
server's :class:`~testing.fake_llm_server.SchemaResponder` can find: a sponsor, a phase, an
enrollment number, a start date and a yes/no, each in its own sentence so evidence quotes
are exact substrings.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from sqlalchemy.orm import Session

from extraction.models import Document, ParseStatus, Project
from testing.extraction_factory import VARIABLES, make_project

__all__ = ["VARIABLES", "add_trial_documents", "make_project", "point_at_fake_llm", "trial_text"]


def trial_text(index: int) -> str:
    """A short trial report; every value differs with ``index``."""
    return (
        f"Sponsor{index} Labs sponsored this trial.\n"
        f"In total {100 + index} participants were enrolled.\n"
        f"It is a Phase {index % 3 + 1} study.\n"
        f"The trial started on 2024-{index % 12 + 1:02d}-15.\n"
        "Participants were randomised: yes.\n"
    )


def add_trial_documents(session: Session, project: Project, n: int, *, start: int = 0,
                        prefix: str = "trial") -> list[Document]:
    """``n`` parsed documents with distinct content (so none is a re-use of another)."""
    documents = []
    for index in range(start, start + n):
        text = trial_text(index)
        document = Document(
            project_id=project.id, filename=f"{prefix}{index:04d}.txt", text=text,
            content_hash=hashlib.sha256(text.encode()).hexdigest(), page_offsets=[0],
            page_count=1, parse_status=ParseStatus.OK, mime="text/plain",
            size_bytes=len(text.encode()),
        )
        session.add(document)
        documents.append(document)
    session.flush()
    return documents


def point_at_fake_llm(monkeypatch: pytest.MonkeyPatch, base_url: str, **settings: Any) -> None:
    """Environment for runs against the fake server: fast retries, small chunks."""
    values = {
        "LLM_BASE_URL": base_url,
        "LLM_API_KEY": "sk-test",
        "LLM_MODEL": "fake-model",
        "LLM_TIMEOUT": 10,
        "LLM_BACKOFF_BASE": 0.01,
        "LLM_BACKOFF_MAX": 0.05,
        "DOCUMENTS_PER_CHUNK": 4,
        "LLM_CONCURRENCY": 4,
        "CANCEL_POLL_SECONDS": 0.1,
        "PROGRESS_FLUSH_SECONDS": 0.2,
    }
    values.update({k.upper(): v for k, v in settings.items()})
    for key, value in values.items():
        monkeypatch.setenv(f"EXTRACTFLOW_{key}", str(value))
