"""Exports read back from disk (pandas, openpyxl, duckdb, json) on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import openpyxl
import pandas as pd
import pytest
from sqlalchemy.orm import Session

from extraction import codebook
from extraction.errors import ConflictError, NotFoundError, StateError, ValidationError
from extraction.export import ExportOptions, ExportResult, export_project
from extraction.models import Document, JobKind, JobStatus, Project
from testing.extraction_factory import Cell, add_documents, add_job, add_prompt, make_project

VARIABLE_ORDER = ["sponsor", "phase", "enrollment", "start_date", "randomised"]
EXTENSIONS = {"csv-wide": ".csv", "csv-long": ".csv", "xlsx": ".xlsx", "json": ".json",
              "parquet": ".parquet"}


class Trials:
    """Three documents × five variables: values of every type, a not_found and a failed cell."""

    def __init__(self, session: Session) -> None:
        self.project: Project = make_project(session)
        self.docs: list[Document] = add_documents(session, self.project, 3)
        d0, d1, d2 = self.docs
        self.job = add_job(session, self.project, {
            (d0, "sponsor"): Cell("Acme Pharma", evidence="Sponsored by Acme Pharma", page=1),
            (d0, "phase"): "Phase 2",
            (d0, "enrollment"): Cell(120, confidence=0.95, evidence="120 participants", page=2),
            (d0, "start_date"): "2020-03-15",
            (d0, "randomised"): True,
            (d1, "sponsor"): Cell(None),
            (d1, "phase"): Cell("Phase 3", confidence=0.4, evidence="a phase 3 trial", page=1),
            (d1, "enrollment"): 80.5,
            (d1, "start_date"): "2019-11-02",
            (d1, "randomised"): Cell(None, status="failed", confidence=None),
            (d2, "sponsor"): Cell("Beta Bio", confidence=None),
            (d2, "phase"): "Phase 1",
            (d2, "enrollment"): 7,
            (d2, "start_date"): "2021-06-30",
            (d2, "randomised"): False,
        }, tokens_in=1500, tokens_out=300)
        session.commit()

    def ids(self) -> list[str]:
        return [str(d.id) for d in self.docs]


@pytest.fixture
def trials(session: Session) -> Trials:
    return Trials(session)


def export(session: Session, tmp_path: Path, fmt: str, name: str = "out",
           project: str = "trials", **options: Any) -> ExportResult:
    output = tmp_path / f"{name}{EXTENSIONS[fmt]}"
    return export_project(session, project, ExportOptions(format=fmt, output=output, **options))


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def parquet_types(path: Path) -> dict[str, str]:
    return {r[0]: r[1] for r in duckdb.sql(
        f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()}


def sheet_rows(path: Path, sheet: str) -> list[tuple[Any, ...]]:
    return list(openpyxl.load_workbook(path)[sheet].iter_rows(values_only=True))


# ------------------------------------------------------------------ shapes


def test_csv_wide_has_one_row_per_document_in_codebook_order(
        session: Session, trials: Trials, tmp_path: Path) -> None:
    result = export(session, tmp_path, "csv-wide")
    frame = read_csv(result.path)
    assert list(frame.columns) == ["document_id", "filename", *VARIABLE_ORDER]
    assert len(frame) == 3 == result.rows and result.columns == 7
    assert list(frame["document_id"]) == trials.ids()
    first = frame.iloc[0]
    assert (first["sponsor"], first["phase"], first["enrollment"], first["start_date"],
            first["randomised"]) == ("Acme Pharma", "Phase 2", "120", "2020-03-15", "true")
    second = frame.iloc[1]
    assert second["sponsor"] == "" and second["randomised"] == ""  # not_found, failed
    assert second["enrollment"] == "80.5"


def test_csv_long_has_one_row_per_extraction(
        session: Session, trials: Trials, tmp_path: Path) -> None:
    result = export(session, tmp_path, "csv-long")
    frame = read_csv(result.path)
    assert list(frame.columns) == ["document_id", "filename", "variable", "type", "value",
                                   "status", "prompt_version", "model", "job_id"]
    assert len(frame) == 15 == result.rows
    assert list(frame["variable"][:5]) == VARIABLE_ORDER
    statuses = dict(zip(zip(frame["filename"], frame["variable"]), frame["status"]))
    assert statuses[("doc001.txt", "sponsor")] == "not_found"
    assert statuses[("doc001.txt", "randomised")] == "failed"
    assert set(frame["job_id"]) == {str(trials.job.id)}
    assert set(frame["prompt_version"]) == {"1"}


def test_more_variables_than_values_still_give_every_column(
        session: Session, trials: Trials, tmp_path: Path) -> None:
    codebook.add_variable(session, trials.project, {"name": "country", "type": "TEXT"})
    codebook.delete_variable(session, trials.project, "phase")
    session.commit()
    frame = read_csv(export(session, tmp_path, "csv-wide").path)
    assert list(frame.columns) == ["document_id", "filename", "sponsor", "enrollment",
                                   "start_date", "randomised", "country"]
    assert set(frame["country"]) == {""}


# ------------------------------------------------------------------ options


@pytest.mark.parametrize("fmt", ["csv-wide", "csv-long", "xlsx", "json", "parquet"])
def test_confidence_and_source_text_appear_only_when_asked(
        session: Session, trials: Trials, tmp_path: Path, fmt: str) -> None:
    plain = export(session, tmp_path, fmt, name="plain")
    rich = export(session, tmp_path, fmt, name="rich", include_confidence=True,
                  include_source_text=True)
    for result, expect in ((plain, False), (rich, True)):
        names = _column_names(result)
        assert any("confidence" in n for n in names) is expect, names
        assert any("evidence" in n for n in names) is expect, names
        assert any(n == "page" or n.endswith("__page") for n in names) is expect, names
    assert "document_text" not in _column_names(rich)
    if fmt == "csv-wide":
        row = read_csv(rich.path).iloc[0]
        assert row["enrollment__confidence"] == "0.95"
        assert row["enrollment__evidence"] == "120 participants"
        assert row["enrollment__page"] == "2"
    if fmt == "json":
        doc = json.loads(rich.path.read_text())["documents"][0]
        assert doc["enrollment"] == {"value": 120, "status": "ok", "confidence": 0.95,
                                     "support": None, "evidence": "120 participants", "page": 2}


def _column_names(result: ExportResult) -> list[str]:
    """The columns as the file itself says, read back with the format's own reader."""
    if result.format.value.startswith("csv"):
        return list(read_csv(result.path).columns)
    if result.format.value == "xlsx":
        names = list(sheet_rows(result.path, "data")[0])
        return names + list(sheet_rows(result.path, "long")[0])
    if result.format.value == "parquet":
        return list(parquet_types(result.path))
    doc = json.loads(result.path.read_text())["documents"][0]
    names = list(doc)
    for value in doc.values():
        if isinstance(value, dict):
            names += list(value)
    return names


def test_min_confidence_blanks_and_flags(
        session: Session, trials: Trials, tmp_path: Path) -> None:
    wide = read_csv(export(session, tmp_path, "csv-wide", min_confidence=0.9).path)
    by_file = wide.set_index("filename")
    # 0.4 is below the threshold; a missing confidence cannot meet it; 0.9 and 0.95 do.
    assert by_file.loc["doc001.txt", "phase"] == ""
    assert by_file.loc["doc001.txt", "phase__flagged"] == "true"
    assert by_file.loc["doc002.txt", "sponsor"] == ""
    assert by_file.loc["doc002.txt", "sponsor__flagged"] == "true"
    assert by_file.loc["doc000.txt", "enrollment"] == "120"
    assert by_file.loc["doc000.txt", "phase"] == "Phase 2"  # exactly 0.9 is kept
    assert by_file.loc["doc000.txt", "phase__flagged"] == "false"
    assert by_file.loc["doc001.txt", "sponsor__flagged"] == "false"  # no value, nothing to flag

    result = export(session, tmp_path, "csv-long", name="long", min_confidence=0.9)
    long = read_csv(result.path).set_index(["filename", "variable"])
    assert "flagged" in long.columns and result.flagged == 2
    assert long.loc[("doc001.txt", "phase"), "value"] == ""
    assert long.loc[("doc001.txt", "phase"), "flagged"] == "true"
    assert long.loc[("doc000.txt", "phase"), "flagged"] == "false"
    assert len(long) == 15  # flagged rows are blanked, not dropped

    plain = read_csv(export(session, tmp_path, "csv-long", name="plain").path)
    assert "flagged" not in plain.columns


TEXT = "=SUM(1)\nFull text, page one\fpage two"


def _texts_in(result: ExportResult) -> list[Any]:
    """The document_text column as the file holds it, one entry per row."""
    fmt = result.format.value
    if fmt.startswith("csv"):
        with result.path.open(newline="") as fh:
            return [r["document_text"] for r in csv.DictReader(fh)]
    if fmt == "xlsx":
        header, *rows = sheet_rows(result.path, "data")
        return [r[header.index("document_text")] for r in rows]
    if fmt == "parquet":
        return pd.read_parquet(result.path)["document_text"].tolist()
    return [d["document_text"] for d in json.loads(result.path.read_text())["documents"]]


@pytest.mark.parametrize("fmt", ["csv-wide", "csv-long", "xlsx", "json", "parquet"])
def test_document_text_only_when_asked(
        session: Session, trials: Trials, tmp_path: Path, fmt: str) -> None:
    trials.docs[0].text = TEXT
    session.commit()
    assert "document_text" not in _column_names(export(session, tmp_path, fmt))
    result = export(session, tmp_path, fmt, name="text", include_document_text=True)
    names = _column_names(result)
    assert names[2] == "document_text"
    texts = _texts_in(result)
    first = {"csv-wide": "'" + TEXT, "csv-long": "'" + TEXT,  # neutralised for spreadsheets
             "xlsx": "'=SUM(1)\nFull text, page onepage two",  # and no control characters
             "json": TEXT, "parquet": TEXT}[fmt]
    assert texts[0] == first
    assert texts[-1] == "The document doc002.txt."
    assert len(texts) == (15 if fmt == "csv-long" else 3)
    if fmt == "csv-long":
        assert texts[:5] == [first] * 5  # one row per extraction, each with its document


# ------------------------------------------------------------------ typed formats


def test_xlsx_has_typed_cells_and_four_sheets(
        session: Session, trials: Trials, tmp_path: Path) -> None:
    result = export(session, tmp_path, "xlsx", include_confidence=True, min_confidence=0.5)
    book = openpyxl.load_workbook(result.path)
    assert book.sheetnames == ["data", "long", "codebook", "run metadata"]
    data = book["data"]
    assert data.freeze_panes == "A2"
    header = [c.value for c in data[1]]
    assert header[:3] == ["document_id", "filename", "sponsor"]
    col = {name: i for i, name in enumerate(header)}
    row0, row1, row2 = (next(data.iter_rows(min_row=r, max_row=r)) for r in (2, 3, 4))
    assert row0[col["enrollment"]].value == 120 and row0[col["enrollment"]].data_type == "n"
    assert row1[col["enrollment"]].value == 80.5
    assert row0[col["start_date"]].value == datetime(2020, 3, 15)
    assert row0[col["start_date"]].is_date
    assert row0[col["randomised"]].value is True and row0[col["randomised"]].data_type == "b"
    assert row2[col["randomised"]].value is False
    assert row0[col["enrollment__confidence"]].value == 0.95
    assert row1[col["phase"]].value is None and row1[col["phase__flagged"]].value is True

    long = sheet_rows(result.path, "long")
    assert len(long) == 16 and long[0][:6] == ("document_id", "filename", "variable", "type",
                                               "value", "status")
    assert long[3][4] == 120  # doc000 enrollment, a number cell in the long sheet too

    cb = sheet_rows(result.path, "codebook")
    cb_header = cb[0]
    phase = dict(zip(cb_header, cb[2]))
    assert phase["name"] == "phase" and phase["type"] == "CATEGORY"
    assert phase["categories"] == "Phase 1; Phase 2; Phase 3"
    assert phase["instructions"] == "The trial phase."
    assert phase["prompt_versions_used"] == "1"

    meta = sheet_rows(result.path, "run metadata")
    settings = {r[0]: r[1] for r in meta if r and r[0] and isinstance(r[0], str)}
    assert settings["project"] == "trials" and settings["option: min_confidence"] == 0.5
    assert settings["extractions"] == 15
    job_header = next(i for i, r in enumerate(meta) if r and r[0] == "job_id")
    job_row = dict(zip(meta[job_header], meta[job_header + 1]))
    assert job_row["job_id"] == str(trials.job.id) and job_row["kind"] == "FULL"
    assert job_row["tokens_in"] == 1500 and job_row["model"] == "fake-model"
    assert meta[job_header + 2][0] == "total"


def test_partial_dates_stay_text(session: Session, tmp_path: Path) -> None:
    project = make_project(session, "dates", [{"name": "start_date", "type": "DATE"}])
    d0, d1 = add_documents(session, project, 2)
    add_job(session, project, {(d0, "start_date"): "2021", (d1, "start_date"): "2020-05-17"})
    session.commit()
    xlsx = export(session, tmp_path, "xlsx", project="dates")
    cells = [r[2] for r in sheet_rows(xlsx.path, "data")[1:]]
    assert cells == ["2021", datetime(2020, 5, 17)]
    parquet = export(session, tmp_path, "parquet", project="dates")
    frame = pd.read_parquet(parquet.path)
    assert list(frame["start_date"]) == ["2021", "2020-05-17"]  # one partial date: text column


def test_parquet_columns_are_typed(session: Session, trials: Trials, tmp_path: Path) -> None:
    variables = [{"name": "sites", "type": "CATEGORY", "categories": ["EU", "US", "Asia"],
                  "multi_select": True},
                 {"name": "dose", "type": "NUMBER"}]
    for spec in variables:
        codebook.add_variable(session, trials.project, spec)
    d0, d1, _ = trials.docs
    add_job(session, trials.project, {(d0, "sites"): ["EU", "US"], (d1, "sites"): ["Asia"],
                                      (d0, "dose"): 2.5, (d1, "dose"): 10})
    session.commit()
    result = export(session, tmp_path, "parquet", include_confidence=True)
    types = parquet_types(result.path)
    assert types["enrollment"] == "DOUBLE"  # 80.5 is not whole
    assert types["dose"] == "DOUBLE"
    assert types["start_date"] == "DATE"
    assert types["randomised"] == "BOOLEAN"
    assert types["sites"] == "VARCHAR[]"
    assert types["sponsor"] == "VARCHAR" and types["sponsor__confidence"] == "DOUBLE"
    frame = pd.read_parquet(result.path)
    assert len(frame) == 3
    assert list(frame["sites"][0]) == ["EU", "US"]
    assert frame["randomised"].tolist() == [True, None, False]


def test_whole_numbers_become_integer_columns(session: Session, tmp_path: Path) -> None:
    project = make_project(session, "counts", [{"name": "n", "type": "NUMBER"}])
    d0, d1 = add_documents(session, project, 2)
    add_job(session, project, {(d0, "n"): 12, (d1, "n"): 3.0})
    session.commit()
    result = export(session, tmp_path, "parquet", project="counts")
    assert parquet_types(result.path)["n"] == "BIGINT"
    assert pd.read_parquet(result.path)["n"].tolist() == [12, 3]
    json_doc = json.loads(export(session, tmp_path, "json", project="counts").path.read_text())
    assert [d["n"] for d in json_doc["documents"]] == [12, 3]
    assert all(isinstance(d["n"], int) for d in json_doc["documents"])


def test_json_values_are_typed(session: Session, trials: Trials, tmp_path: Path) -> None:
    result = export(session, tmp_path, "json")
    data = json.loads(result.path.read_text())
    assert data["export"]["project"] == "trials"
    assert [v["name"] for v in data["export"]["variables"]] == VARIABLE_ORDER
    assert data["export"]["jobs"][0]["job_id"] == str(trials.job.id)
    docs = data["documents"]
    assert len(docs) == 3 == result.rows
    assert docs[0] == {"document_id": trials.ids()[0], "filename": "doc000.txt",
                       "sponsor": "Acme Pharma", "phase": "Phase 2", "enrollment": 120,
                       "start_date": "2020-03-15", "randomised": True}
    assert docs[1]["sponsor"] is None and docs[1]["enrollment"] == 80.5
    assert docs[2]["randomised"] is False


def test_json_metadata_carries_status_and_flags(
        session: Session, trials: Trials, tmp_path: Path) -> None:
    docs = json.loads(export(session, tmp_path, "json", min_confidence=0.5).path.read_text())
    phase = docs["documents"][1]["phase"]
    assert phase == {"value": None, "status": "ok", "flagged": True}
    assert docs["documents"][1]["randomised"] == {"value": None, "status": "failed",
                                                  "flagged": False}


# ------------------------------------------------------------------ job selection


def test_newest_successful_answer_wins_per_cell(session: Session, tmp_path: Path) -> None:
    project = make_project(session, "runs", [{"name": "x", "type": "TEXT"},
                                             {"name": "y", "type": "NUMBER"}])
    d0, d1, d2, d3 = add_documents(session, project, 4)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    sample = add_job(session, project, {(d0, "x"): "sample", (d1, "x"): "sample",
                                        (d0, "y"): 1}, kind=JobKind.SAMPLE, finished_at=t0)
    add_prompt(session, codebook.get_variable(session, project, "x"))  # refined → v2
    full = add_job(session, project, {(d, n): (f"full-{d.filename}" if n == "x" else 2)
                                      for d in (d0, d1, d2) for n in ("x", "y")}
                   | {(d3, "x"): Cell(None, status="failed")},
                   finished_at=t0 + timedelta(hours=1))
    # A later run whose calls failed does not blank the good values, but a newer not_found
    # is an answer, and a cell no run answered keeps its newest failure.
    rerun = add_job(session, project, {(d0, "x"): Cell(None, status="failed"),
                                       (d1, "y"): Cell(None, status="not_found"),
                                       (d3, "x"): Cell(None, status="failed")},
                    finished_at=t0 + timedelta(hours=2))
    # Jobs that did not complete never count, however new.
    add_job(session, project, {(d1, "x"): "failed-job"}, status=JobStatus.FAILED,
            finished_at=t0 + timedelta(hours=3))
    add_job(session, project, {(d2, "x"): "running"}, status=JobStatus.PROCESSING)
    session.commit()

    result = export(session, tmp_path, "csv-long", project="runs")
    long = read_csv(result.path).set_index(["filename", "variable"])
    assert long.loc[("doc000.txt", "x"), "value"] == "full-doc000.txt"  # not the failure
    assert long.loc[("doc000.txt", "x"), "status"] == "ok"
    assert long.loc[("doc000.txt", "x"), "job_id"] == str(full.id)  # says where it came from
    assert long.loc[("doc001.txt", "y"), "status"] == "not_found"
    assert long.loc[("doc001.txt", "y"), "job_id"] == str(rerun.id)
    assert long.loc[("doc003.txt", "x"), "status"] == "failed"
    assert long.loc[("doc003.txt", "x"), "job_id"] == str(rerun.id)
    assert long.loc[("doc001.txt", "x"), "value"] == "full-doc001.txt"
    assert long.loc[("doc001.txt", "x"), "prompt_version"] == "2"
    assert long.loc[("doc002.txt", "x"), "value"] == "full-doc002.txt"
    assert long.loc[("doc000.txt", "y"), "value"] == "2"
    assert len(long) == 7
    assert set(result.job_ids) == {str(full.id), str(rerun.id)}

    only_sample = export(session, tmp_path, "csv-wide", name="sample", project="runs",
                         job_id=str(sample.id))
    wide = read_csv(only_sample.path)
    assert list(wide["filename"]) == ["doc000.txt", "doc001.txt"]
    assert list(wide["x"]) == ["sample", "sample"] and list(wide["y"]) == ["1", ""]


def test_job_selection_errors(session: Session, trials: Trials, tmp_path: Path) -> None:
    other = make_project(session, "other", [{"name": "x", "type": "TEXT"}])
    (doc,) = add_documents(session, other, 1)
    foreign = add_job(session, other, {(doc, "x"): "v"})
    session.commit()
    with pytest.raises(NotFoundError) as err:
        export(session, tmp_path, "csv-wide", job_id=str(foreign.id))
    assert "project 'trials' has no job" in err.value.detail
    with pytest.raises(NotFoundError):
        export(session, tmp_path, "csv-wide", project="ghost")
    empty = make_project(session, "empty", [{"name": "x", "type": "TEXT"}])
    add_documents(session, empty, 1)
    session.commit()
    with pytest.raises(StateError, match="no COMPLETE job"):
        export(session, tmp_path, "csv-wide", project="empty")
    assert not (tmp_path / "out.csv").exists()


# ------------------------------------------------------------------ safety


FORMULAS = {"=cmd|' /C calc'!A0": "'=cmd|' /C calc'!A0", "+1+1": "'+1+1", "-2+3": "'-2+3",
            "@SUM(A1:A3)": "'@SUM(A1:A3)", "-3.5": "-3.5"}


@pytest.fixture
def formulas(session: Session) -> list[Document]:
    project = make_project(session, "evil", [{"name": "note", "type": "TEXT"},
                                             {"name": "delta", "type": "NUMBER"}])
    docs = add_documents(session, project, len(FORMULAS), prefix="=HYPERLINK")
    add_job(session, project, {
        **{(d, "note"): Cell(text, evidence=text) for d, text in zip(docs, FORMULAS)},
        (docs[0], "delta"): -3.5,
    })
    session.commit()
    return docs


def test_formulas_are_neutralised_in_csv(
        session: Session, formulas: list[Document], tmp_path: Path) -> None:
    result = export(session, tmp_path, "csv-wide", project="evil", include_source_text=True)
    with result.path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["note"] for r in rows] == list(FORMULAS.values())
    assert [r["note__evidence"] for r in rows] == list(FORMULAS.values())
    assert rows[0]["delta"] == "-3.5"  # a real number stays a number
    assert all(r["filename"].startswith("'=HYPERLINK") for r in rows)
    long = export(session, tmp_path, "csv-long", name="long", project="evil")
    with long.path.open(newline="") as fh:
        values = [r["value"] for r in csv.DictReader(fh) if r["variable"] == "note"]
    assert values == list(FORMULAS.values())


def test_formulas_are_neutralised_in_xlsx(
        session: Session, formulas: list[Document], tmp_path: Path) -> None:
    result = export(session, tmp_path, "xlsx", project="evil", include_source_text=True)
    book = openpyxl.load_workbook(result.path)
    data = book["data"]
    header = [c.value for c in data[1]]
    notes = [row[header.index("note")].value for row in data.iter_rows(min_row=2)]
    assert notes == list(FORMULAS.values())
    delta = data.cell(row=2, column=header.index("delta") + 1)
    assert delta.value == -3.5 and delta.data_type == "n"
    for sheet in book.worksheets:
        assert not any(c.data_type == "f" for row in sheet.iter_rows() for c in row)


def test_output_path_problems(session: Session, trials: Trials, tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as is_dir:
        export_project(session, "trials", ExportOptions(output=tmp_path))
    assert str(tmp_path) in is_dir.value.detail
    missing = tmp_path / "missing" / "out.csv"
    with pytest.raises(ValidationError) as no_parent:
        export_project(session, "trials", ExportOptions(output=missing))
    assert str(missing.parent) in no_parent.value.detail
    existing = tmp_path / "out.csv"
    existing.write_text("precious")
    with pytest.raises(ConflictError) as conflict:
        export_project(session, "trials", ExportOptions(output=existing))
    assert str(existing) in conflict.value.detail and existing.read_text() == "precious"
    forced = export_project(session, "trials", ExportOptions(output=existing, force=True))
    assert len(read_csv(forced.path)) == 3
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


def test_default_output_goes_to_the_exports_folder(
        session: Session, trials: Trials, isolated_home: Path) -> None:
    first = export_project(session, "trials", ExportOptions(format="parquet"))
    second = export_project(session, "trials", ExportOptions(format="parquet"))
    assert first.path.parent == isolated_home / "exports" == second.path.parent
    assert first.path != second.path and first.path.suffix == ".parquet"


def test_variable_names_that_clash_with_generated_columns(
        session: Session, tmp_path: Path) -> None:
    project = make_project(session, "clash", [{"name": "dose", "type": "NUMBER"},
                                              {"name": "dose__confidence", "type": "TEXT"}])
    (doc,) = add_documents(session, project, 1)
    add_job(session, project, {(doc, "dose"): Cell(5, confidence=0.7),
                               (doc, "dose__confidence"): "high"})
    session.commit()
    result = export(session, tmp_path, "csv-wide", project="clash", include_confidence=True)
    frame = read_csv(result.path)
    assert list(frame.columns) == ["document_id", "filename", "dose", "dose__confidence_2",
                                   "dose__support", "dose__confidence",
                                   "dose__confidence__confidence", "dose__confidence__support"]
    assert frame.iloc[0]["dose__confidence"] == "high"
    assert frame.iloc[0]["dose__confidence_2"] == "0.7"
