"""Logging set-up for the CLI: readable messages for people, quiet third-party libraries.

Prefect's ephemeral API prints event-flush errors and telemetry tracebacks at exit; those are
noise to a user of the CLI, so their loggers are raised to CRITICAL here.

The terminal and the Prefect UI are quieted separately: Prefect's *console handler* only
shows warnings, while its loggers stay at INFO, so a flow run's lines (extractflow's plan,
progress, failed documents, summary) still reach the API and the run's Logs tab. Raising
``PREFECT_LOGGING_LEVEL`` instead would silence both.
"""

from __future__ import annotations

import logging
import os

__all__ = ["configure_logging", "quiet_prefect_environment", "set_prefect_console_level"]

_CONSOLE_LEVEL = "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"
_UNREAD = object()
_user_console_level: object = _UNREAD

_NOISY_LOGGERS = ("httpx", "httpcore", "openai", "alembic", "instructor", "prefect.events",
                  "prefect._internal", "prefect.server", "uvicorn", "aiosqlite")


def quiet_prefect_environment() -> None:
    """Set Prefect environment defaults that keep an embedded run quiet (user values win)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    set_prefect_console_level("WARNING")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "ERROR")


def set_prefect_console_level(level: str) -> None:
    """The level of Prefect's console handler (the terminal), unless the user set one.

    Commands that run a flow in this process lower the terminal further (CRITICAL: the CLI
    prints the outcome itself) after the CLI's default (WARNING) was set, so the user's own
    value is remembered the first time, not taken from the environment each time.
    """
    global _user_console_level
    if _user_console_level is _UNREAD:
        _user_console_level = os.environ.get(_CONSOLE_LEVEL)
    if _user_console_level is None:
        os.environ[_CONSOLE_LEVEL] = level


def configure_logging(verbose: bool = False) -> None:
    """Configure the root logger once for a CLI process."""
    level = logging.DEBUG if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.CRITICAL)
