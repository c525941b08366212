"""The ``ingest`` Prefect flow on the test harness: bad files recorded, bounded graph, artifacts.

Runs on SQLite and PostgreSQL. The flow runs the same `extraction.ingest` steps as
``ingest_paths`` (tested without Prefect in test_ingest.py); here we check what Prefect adds:
one parse and one store task run per chunk, a progress artifact and a Markdown summary, the
live totals for in-process watchers, and a clear failure for an unknown project.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from extraction import codebook, db
from extraction.ingest import IngestSummary
from extraction.models import Document
from testing.document_factory import make_corrupt_docx, make_docx, make_pdf, make_text


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(5):
        make_text(folder / f"note{i}.txt", f"Note number {i} about the trial.")
    make_pdf(folder / "report.pdf", ["Page one of the report.", "Page two: 40 patients."])
    make_docx(folder / "memo.docx", ["The memo text."], headings=["Memo"])
    make_corrupt_docx(folder / "broken.docx")
    (folder / "empty.txt").write_bytes(b"")
    return folder


@pytest.fixture
def project(session: Session) -> str:
    codebook.create_project(session, {"name": "ingest-flow"})
    session.commit()
    return "ingest-flow"


def _flow_run_graph(flow_run_id: uuid.UUID) -> tuple[list[str], list[Any]]:
    """(task run names, artifacts) of one flow run, read back from the Prefect API."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
    )

    async def read() -> tuple[list[str], list[Any]]:
        async with get_client() as client:
            tasks = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            artifacts = await client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
            return sorted(t.name for t in tasks), artifacts

    return asyncio.run(read())


def test_ingest_flow_stores_every_file_in_chunks_with_artifacts(
        db_url: str, project: str, corpus: Path, prefect_harness: None) -> None:
    from flows.ingest import artifact_key, ingest, watch_progress

    seen: list[tuple[int, int]] = []

    def progress(summary: IngestSummary) -> None:
        seen.append((summary.files_done, summary.files_seen))

    with watch_progress(progress):
        state = asyncio.run(ingest(project=project, paths=[str(corpus)], chunk_size=4,
                                   return_state=True))
    result = state.result()
    assert (result["files_seen"], result["ok"], result["empty"], result["failed"]) == (9, 7, 1, 1)
    assert result["pages"] >= 2 + 5 + 1
    assert {p["filename"] for p in result["problems"]} == {"broken.docx", "empty.txt"}
    assert seen[0] == (0, 9) and seen[-1] == (9, 9) and len(seen) == 1 + 3  # 3 chunks of 4
    with db.session_scope(db_url) as s:
        assert len(s.scalars(select(Document)).all()) == 9

    tasks, artifacts = _flow_run_graph(state.state_details.flow_run_id)
    tasks[0] = tasks[0].split("-")[0]  # Prefect names an unnamed run "discover-<suffix>"
    assert tasks == ["discover", "parse-chunk-0", "parse-chunk-1", "parse-chunk-2",
                     "store-chunk-0", "store-chunk-1", "store-chunk-2"]
    by_type = {a.type: a for a in artifacts}
    assert {"progress", "markdown"} <= set(by_type)
    summary = by_type["markdown"]
    assert summary.key == artifact_key(project)
    assert "broken.docx" in summary.data and "corrupt DOCX" in summary.data


def test_ingest_flow_task_runs_share_one_api_client(
        db_url: str, project: str, corpus: Path, prefect_harness: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each Prefect API client costs a TLS context (~30 ms of CPU); 10,000 files make 201
    task runs, so they must share the flow's client instead of opening one each."""
    import ssl

    from flows.ingest import ingest

    made: list[int] = []
    real = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counting)
    result = asyncio.run(ingest(project=project, paths=[str(corpus)], chunk_size=2))

    assert result["files_seen"] == 9  # 1 + 2 × 5 = 11 task runs
    assert len(made) <= 8  # 7 measured; a client per task run made 22


def test_ingest_flow_twice_adds_nothing_the_second_time(
        db_url: str, project: str, corpus: Path, prefect_harness: None) -> None:
    from flows.ingest import ingest

    first = asyncio.run(ingest(project=project, paths=[str(corpus)]))
    second = asyncio.run(ingest(project=project, paths=[str(corpus / "*.txt"), str(corpus)]))
    assert first["added"] == 9
    assert second["added"] == 0 and second["duplicates"] == 9


def test_ingest_shards_without_a_work_pool_ingest_everything_here(
        db_url: str, project: str, corpus: Path, prefect_harness: None) -> None:
    # The test harness is a Prefect server without the ingest deployment.
    from flows.ingest import ingest

    result = asyncio.run(ingest(project=project, paths=[str(corpus)], shards=3))
    assert result["files_seen"] == 9 and result["added"] == 9 and result["failed"] == 1


def test_ingest_flow_fails_clearly_for_an_unknown_project(
        db_url: str, corpus: Path, prefect_harness: None) -> None:
    from flows.ingest import ingest

    state = asyncio.run(ingest(project="no-such-project", paths=[str(corpus)],
                               return_state=True))
    assert state.is_failed()
    with pytest.raises(Exception, match="no-such-project"):
        state.result()
