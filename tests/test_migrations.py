"""The Alembic history builds exactly the schema the models describe, on both databases."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from extraction import db
from extraction.models import Base
from tests.conftest import PG_ADMIN_URL


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A brand-new empty database (not the shared test schema: downgrade drops tables)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        db.dispose_engines()
        return
    request.getfixturevalue("pg_schema_url")  # skips or fails the same way when PG is down
    schema = f"xf_mig_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    db.dispose_engines()
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _diff(url: str) -> list:
    engine = db.get_engine(url)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, Base.metadata)


def test_upgrade_to_head_matches_models(empty_db_url: str) -> None:
    reached = db.upgrade_database(empty_db_url)
    assert reached == db.head_revision()
    tables = set(inspect(db.get_engine(empty_db_url)).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert _diff(empty_db_url) == [], "models and migrations disagree: write a revision"


def test_downgrade_to_base_removes_every_table(empty_db_url: str) -> None:
    db.upgrade_database(empty_db_url)
    assert db.downgrade_database(empty_db_url, "base") == "base"
    remaining = set(inspect(db.get_engine(empty_db_url)).get_table_names())
    assert remaining <= {"alembic_version"}
    # and back up again: the history is re-playable
    assert db.upgrade_database(empty_db_url) == db.head_revision()


def test_embedded_sqlite_is_created_on_first_use(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'fresh.db'}"
    with db.session_scope(url) as s:
        assert s.execute(text("select count(*) from projects")).scalar() == 0
    assert db.current_revision(db.get_engine(url)) == db.head_revision()
    db.dispose_engines()


def test_postgres_behind_head_asks_for_db_upgrade(empty_db_url: str) -> None:
    if empty_db_url.startswith("sqlite"):
        pytest.skip("SQLite is upgraded silently; only a shared PostgreSQL asks first")
    from extraction.errors import DatabaseError

    with pytest.raises(DatabaseError, match="extractflow db upgrade"):
        db.open_session(empty_db_url)


def test_unreachable_database_names_the_url_without_password() -> None:
    from extraction.errors import DatabaseError

    url = "postgresql+psycopg://someone:hunter2@127.0.0.1:1/nowhere"
    with pytest.raises(DatabaseError) as info:
        db.open_session(url)
    assert "hunter2" not in str(info.value)
    assert "127.0.0.1:1" in str(info.value)
    db.dispose_engines()
