"""A small evaluated project: six documents, one COMPLETE job, a wide gold CSV.

The gold and the extracted values are chosen so every outcome occurs; the expected figures in
the tests are counted by hand from this table.

    doc     phase gold / extracted   enrollment gold / extracted   randomised gold / extracted
    doc000  Phase 1 / Phase 1        100 / 100                     yes / true
    doc001  Phase 2 / Phase 2        200 / 200                     yes / true
    doc002  Phase 3 / Phase 1 (W)    300 / 300                     yes / true
    doc003  Phase 1 / – (O)          400 / 400                     no  / true (W)
    doc004  Phase 2 / Phase 2        500 / 500                     yes / true
    doc005  –       / Phase 3 (H)    600 / 601 (W)                 yes / failed (O)
    doc006  Phase 1 / (no extraction in the job: not extracted)

start_date: gold 2021-03 for doc000 (extracted 2021-03-14: a match at the gold's precision);
sponsor has no gold column.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from testing.extraction_factory import Cell, add_documents, add_job, make_project

GOLD_CSV = (
    "filename,phase,enrollment,randomised,start_date\n"
    "doc000.txt,Phase 1,100,yes,2021-03\n"
    "doc001.txt,Phase 2,200,yes,\n"
    "doc002.txt,Phase 3,300,yes,\n"
    "doc003.txt,Phase 1,400,no,\n"
    "doc004.txt,Phase 2,500,yes,\n"
    "doc005.txt,,600,yes,\n"
    "doc006.txt,Phase 1,,,\n"
)


@dataclass
class Evaluated:
    project: str
    job_id: str
    gold: Path
    documents: list


@pytest.fixture
def evaluated(session: Session, tmp_path: Path) -> Evaluated:
    project = make_project(session)
    docs = add_documents(session, project, 7)
    phases = ["Phase 1", "Phase 2", "Phase 1", None, "Phase 2", "Phase 3"]
    confidences = [0.9, 0.8, 0.7, 0.3, 0.95, 0.4]
    cells = {}
    for i, doc in enumerate(docs[:6]):
        cells[(doc, "phase")] = Cell(phases[i], confidence=confidences[i])
        cells[(doc, "enrollment")] = Cell(601.0 if i == 5 else 100.0 * (i + 1),
                                          confidence=0.6 if i == 5 else 0.9)
        cells[(doc, "randomised")] = Cell(None, status="failed", confidence=None) if i == 5 \
            else Cell(True, confidence=0.2 if i == 3 else 0.85)
        cells[(doc, "sponsor")] = Cell(f"Sponsor {i}")
        cells[(doc, "start_date")] = Cell("2021-03-14" if i == 0 else None, confidence=0.5)
    job = add_job(session, project, cells, tokens_in=1200, tokens_out=300)
    session.commit()
    gold = tmp_path / "gold.csv"
    gold.write_text(GOLD_CSV, encoding="utf-8")
    return Evaluated(project=project.name, job_id=str(job.id), gold=gold, documents=docs)
