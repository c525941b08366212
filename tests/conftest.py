"""Shared fixtures: an isolated EXTRACTFLOW_HOME per test, and the database under test.

Every test that takes ``db_url`` runs twice: on a fresh SQLite file and on the PostgreSQL
server at 127.0.0.1:5432 (database ``test``) inside a schema made for this test session.
With ``CI=true`` an unreachable PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from extraction import db
from extraction.models import Base
from testing.fake_llm_server import FakeLLMServer

PG_ADMIN_URL = os.environ.get(
    "EXTRACTFLOW_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every extractflow path at a temp dir and drop the user's EXTRACTFLOW_ settings."""
    for key in list(os.environ):
        if key.startswith("EXTRACTFLOW_") and key != "EXTRACTFLOW_TEST_PG_URL" \
                and key != "EXTRACTFLOW_REQUIRE_LOCAL_MODEL":
            monkeypatch.delenv(key, raising=False)
    home = tmp_path / "xf-home"
    monkeypatch.setenv("EXTRACTFLOW_HOME", str(home))
    monkeypatch.chdir(tmp_path)  # no stray .env from the repo is read
    return home


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file migrated to head once; each test copies it (faster than migrating)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    url = f"sqlite:///{path}"
    db.upgrade_database(url)
    db.dispose_engines()
    return path


@pytest.fixture(scope="session")
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL schema for this test session, migrated to head, dropped at the end."""
    admin = create_engine(PG_ADMIN_URL)
    try:
        with admin.connect() as conn:
            conn.execute(text("select 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "no PostgreSQL"
        admin.dispose()
        message = f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {exc}"
        if _in_ci():
            pytest.fail(message + " (CI=true: PostgreSQL tests must run)")
        pytest.skip(message)
    schema = f"xf_test_{uuid.uuid4().hex[:10]}"
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    db.upgrade_database(url)
    yield url
    db.dispose_engines()
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _truncate_all(url: str) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    engine = db.get_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} CASCADE"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A clean database at head, also set as EXTRACTFLOW_DATABASE_URL for CLI and flows."""
    if request.param == "sqlite":
        path = tmp_path / "extractflow.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("pg_schema_url")
        _truncate_all(url)
    monkeypatch.setenv("EXTRACTFLOW_DATABASE_URL", url)
    yield url
    db.dispose_engines()


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    """A session on the test database; tests commit as the application would."""
    s = db.open_session(db_url)
    try:
        yield s
    finally:
        s.rollback()
        s.close()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """Prefect's test harness (a temporary API server on a temp SQLite), once per session.

    Flows in tests run against it; request this fixture in any test that calls a flow.
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture
def fake_llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLMServer]:
    """A fake OpenAI-compatible server for this test, and the settings pointing at it.

    Sets EXTRACTFLOW_LLM_BASE_URL / _MODEL / _API_KEY, and tiny backoffs (10–50 ms) so retry
    tests stay fast; a test that measures backoff sets its own values.
    """
    with FakeLLMServer(model="fake-model") as server:
        for key, value in {
            "LLM_BASE_URL": server.base_url,
            "LLM_MODEL": "fake-model",
            "LLM_API_KEY": "sk-test",
            "LLM_BACKOFF_BASE": "0.01",
            "LLM_BACKOFF_MAX": "0.05",
        }.items():
            monkeypatch.setenv(f"EXTRACTFLOW_{key}", value)
        yield server
