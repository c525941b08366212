"""Pure parts of exports: formula neutralisation, column names, output paths, value typing."""

from __future__ import annotations

from datetime import UTC, date
from pathlib import Path

import duckdb
import pytest

from extraction.errors import ConflictError, ValidationError
from extraction.export.options import ExportFormat, ExportOptions, default_output_path
from extraction.export.safety import (
    ColumnNamer,
    install_sql_macros,
    neutralise,
    resolve_output_path,
    safe_column_name,
)
from extraction.export.values import type_value
from extraction.models import VariableType

CASES = [
    ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
    ("+1+1", "'+1+1"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1:A3)", "'@SUM(A1:A3)"),
    ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"),
    ("-3.5", "-3.5"),
    ("+7", "+7"),
    ("-1e5", "-1e5"),
    ("Acme = good", "Acme = good"),
    ("", ""),
]


@pytest.mark.parametrize(("raw", "expected"), CASES)
def test_neutralise_in_python_and_in_duckdb_agree(raw: str, expected: str) -> None:
    assert neutralise(raw) == expected
    con = duckdb.connect()
    install_sql_macros(con)
    assert con.execute("SELECT xf_safe(?)", [raw]).fetchall()[0][0] == expected


def test_safe_column_names_and_clashes() -> None:
    assert safe_column_name("Trial Phase (v2)") == "trial_phase_v2"
    assert safe_column_name("2nd_site") == "v_2nd_site"
    assert len(safe_column_name("x" * 100)) == 63
    namer = ColumnNamer(["document_id", "filename"])
    assert namer.take("filename") == "filename_2"
    assert namer.take("phase") == "phase"
    assert namer.take("phase") == "phase_2"


def test_output_path_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as is_dir:
        resolve_output_path(tmp_path)
    assert str(tmp_path) in is_dir.value.detail and "is a directory" in is_dir.value.detail
    missing = tmp_path / "nope" / "out.csv"
    with pytest.raises(ValidationError) as no_parent:
        resolve_output_path(missing)
    assert str(missing.parent) in no_parent.value.detail
    assert no_parent.value.field == "output"
    existing = tmp_path / "out.csv"
    existing.write_text("keep me")
    with pytest.raises(ConflictError) as exists:
        resolve_output_path(existing)
    assert str(existing) in exists.value.detail
    assert resolve_output_path(existing, force=True) == existing
    relative = resolve_output_path("rel.csv")
    assert relative.is_absolute() and relative.name == "rel.csv"


def test_options_reject_bad_values() -> None:
    with pytest.raises(ValidationError, match="unknown export format 'xls'"):
        ExportOptions(format="xls")
    with pytest.raises(ValidationError) as threshold:
        ExportOptions(min_confidence=1.5)
    assert threshold.value.field == "min_confidence"
    with pytest.raises(ValidationError) as job:
        ExportOptions(job_id="not-a-uuid")
    assert job.value.field == "job_id"
    assert ExportOptions(format="CSV-Long").format is ExportFormat.CSV_LONG


def test_default_output_path_never_reuses_a_name(tmp_path: Path) -> None:
    from datetime import datetime

    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    first = default_output_path(tmp_path, "Clinical Trials!", ExportFormat.CSV_WIDE, now)
    assert first.name == "clinical-trials-csv-wide-20240501T120000Z.csv"
    first.write_text("")
    second = default_output_path(tmp_path, "Clinical Trials!", ExportFormat.CSV_WIDE, now)
    assert second != first and second.suffix == ".csv"


def test_values_are_typed_by_their_variable() -> None:
    assert type_value(VariableType.NUMBER, False, 42).number == 42.0
    assert type_value(VariableType.NUMBER, False, 42.0).text == "42"
    assert type_value(VariableType.NUMBER, False, "about 40").number is None
    assert type_value(VariableType.NUMBER, False, "about 40").text == "about 40"
    assert type_value(VariableType.BOOLEAN, False, False).boolean is False
    assert type_value(VariableType.BOOLEAN, False, False).text == "false"
    assert type_value(VariableType.DATE, False, "2021-03-15").date == date(2021, 3, 15)
    partial = type_value(VariableType.DATE, False, "2021-03")
    assert partial.date is None and partial.text == "2021-03"
    multi = type_value(VariableType.CATEGORY, True, ["A", "B"])
    assert multi.items == ["A", "B"] and multi.text == "A; B"
    assert type_value(VariableType.TEXT, False, None).text is None
