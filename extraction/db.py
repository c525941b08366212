"""Engine, sessions and schema readiness for SQLite (embedded) and PostgreSQL (production).

The embedded SQLite database is created and upgraded to the newest Alembic revision the first
time it is used, so ``extractflow`` works with no set-up. PostgreSQL is shared by many workers,
so it is never migrated behind anyone's back: it is upgraded explicitly with
``extractflow db upgrade`` and a clear error says so when it is behind.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, String, cast, create_engine, event, func, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from config.settings import Settings, get_settings, mask_url, mask_url_password
from extraction.errors import ConfigError, DatabaseError, NotFoundError, ValidationError

__all__ = [
    "alembic_config",
    "current_revision",
    "dispose_engines",
    "downgrade_database",
    "ensure_database",
    "full_id",
    "get_engine",
    "head_revision",
    "is_sqlite",
    "open_session",
    "session_scope",
    "upgrade_database",
]

_ENGINES: dict[str, Engine] = {}
_READY: set[str] = set()
_LOCK = threading.Lock()
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and route them to psycopg 3, our only PG driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # Foreign keys make deletes cascade; WAL lets the CLI read while a flow writes;
    # busy_timeout turns brief lock contention into a wait instead of an error.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def get_engine(url: str | None = None, *, settings: Settings | None = None) -> Engine:
    """One cached engine per database URL (engines own connection pools; reuse them)."""
    settings = settings or get_settings()
    url = _normalise_url(url or settings.resolved_database_url)
    with _LOCK:
        engine = _ENGINES.get(url)
        if engine is not None:
            return engine
        shown = mask_url(url)
        try:
            parsed = make_url(url)
            if is_sqlite(url):
                if parsed.database and parsed.database != ":memory:":
                    Path(parsed.database).expanduser().parent.mkdir(parents=True,
                                                                    exist_ok=True)
                engine = create_engine(url, echo=settings.database_echo,
                                       connect_args={"timeout": 30})
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = create_engine(url, echo=settings.database_echo, pool_pre_ping=True,
                                       pool_size=10, max_overflow=20)
        except (ArgumentError, ValueError, ImportError) as exc:
            # A bad port (ValueError), an unknown dialect (NoSuchModuleError is an
            # ArgumentError) or a driver that is not installed (ImportError).
            raise ConfigError(
                f"EXTRACTFLOW_DATABASE_URL ({shown}) is not a usable database URL: "
                f"{_url_problem(exc)}. Use sqlite:///PATH or "
                "postgresql://USER:PASSWORD@HOST:PORT/DATABASE.",
                field="database_url", instance=shown,
            ) from None
        _ENGINES[url] = engine
        return engine


def _url_problem(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, ImportError):
        return f"its driver is not installed ({text}); extractflow supports SQLite and " \
            "PostgreSQL (psycopg 3)"
    if "invalid literal for int" in text:
        return "the port is not a number"
    if "Can't load plugin" in text:
        return f"unknown database kind ({text.rsplit(':', 1)[-1].strip()})"
    return text


def dispose_engines() -> None:
    """Close every pooled connection (tests, and forked worker processes)."""
    with _LOCK:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()
        _READY.clear()


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    """An Alembic config pointing at our migrations and ``url``, without an ini file."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head() or ""


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade_database(url: str | None = None, revision: str = "head") -> str:
    """Upgrade the database at ``url`` to ``revision``; returns the revision reached."""
    from alembic import command

    engine = get_engine(url)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    try:
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
    except OperationalError as exc:
        raise _unreachable(engine, exc) from exc
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise DatabaseError(f"upgrading the database failed: {reason}") from exc
    _READY.discard(str(engine.url))
    return current_revision(engine) or "base"


def downgrade_database(url: str | None = None, revision: str = "base") -> str:
    """Downgrade the database at ``url`` to ``revision`` (``base`` drops every table)."""
    from alembic import command

    engine = get_engine(url)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)
    _READY.discard(str(engine.url))
    return current_revision(engine) or "base"


def _unreachable(engine: Engine, exc: Exception) -> DatabaseError:
    url = mask_url_password(engine.url.render_as_string(hide_password=False))
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    return DatabaseError(f"cannot connect to the database {url}: {reason}", instance=url)


def ensure_database(engine: Engine) -> None:
    """Make sure the schema is at head: upgrade SQLite silently, ask for PostgreSQL."""
    key = str(engine.url)
    if key in _READY:
        return
    try:
        current = current_revision(engine)
    except OperationalError as exc:
        raise _unreachable(engine, exc) from exc
    head = head_revision()
    if current != head:
        if engine.dialect.name == "sqlite":
            upgrade_database(engine.url.render_as_string(hide_password=False))
        else:
            has_tables = bool(inspect(engine).get_table_names())
            state = f"at revision {current}" if current else (
                "not initialised" if not has_tables else "not managed by extractflow")
            raise DatabaseError(
                f"the database is {state}, but this extractflow needs revision {head}. "
                "Run `extractflow db upgrade` first.",
                instance=mask_url_password(engine.url.render_as_string(hide_password=False)),
            )
    _READY.add(key)


def full_id(session: Session, model: Any, ref: str | uuid.UUID, *, what: str) -> uuid.UUID:
    """The id of the ``model`` row named by ``ref``: a full id or a unique prefix of ≥ 6 hex
    digits (the 8 characters the CLI's tables show).

    Raises:
        NotFoundError: no such row. ValidationError: a prefix matching several rows.
    """
    text = str(ref).strip().lower()
    try:
        return uuid.UUID(text)
    except ValueError:
        pass
    prefix = text.replace("-", "")
    if len(prefix) < 6 or any(c not in "0123456789abcdef" for c in prefix):
        raise ValidationError(
            f"'{ref}' is not {what} id (a UUID, or at least 6 of its first hex digits)",
            field=what.split()[-1])
    hex_id = func.replace(cast(model.id, String), "-", "")
    found = list(session.scalars(select(model.id).where(hex_id.like(prefix + "%")).limit(2)))
    if len(found) > 1:
        raise ValidationError(f"{what} id prefix '{ref}' matches more than one; give more "
                              "digits", field=what.split()[-1])
    if not found:
        raise NotFoundError(f"no {what.split()[-1]} with id '{ref}'", instance=str(ref))
    return found[0]


_SESSIONMAKERS: dict[str, sessionmaker[Session]] = {}


def open_session(url: str | None = None) -> Session:
    """A new session on a ready database. Prefer :func:`session_scope` where possible."""
    engine = get_engine(url)
    ensure_database(engine)
    key = str(engine.url)
    maker = _SESSIONMAKERS.get(key)
    if maker is None:
        maker = _SESSIONMAKERS.setdefault(
            key, sessionmaker(bind=engine, expire_on_commit=False, future=True)
        )
    return maker()


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A transaction: commit on success, roll back on any error, always close."""
    session = open_session(url)
    try:
        yield session
        session.commit()
    except OperationalError as exc:
        session.rollback()
        raise _unreachable(session.get_bind(), exc) from exc  # type: ignore[arg-type]
    except SQLAlchemyError:
        session.rollback()
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
