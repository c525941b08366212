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

__all__ = ["configure_logging", "quiet_prefect_environment"]

_NOISY_LOGGERS = ("httpx", "httpcore", "openai", "alembic", "instructor", "prefect.events",
                  "prefect._internal", "prefect.server", "uvicorn", "aiosqlite")


def quiet_prefect_environment() -> None:
    """Set Prefect environment defaults that keep an embedded run quiet (user values win)."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "ERROR")


def configure_logging(verbose: bool = False) -> None:
    """Configure the root logger once for a CLI process."""
    level = logging.DEBUG if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.CRITICAL)
