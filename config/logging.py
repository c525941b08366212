"""Logging set-up for the CLI: readable messages for people, quiet third-party libraries.

Prefect's ephemeral API prints event-flush errors and telemetry tracebacks at exit; those are
noise to a user of the CLI, so their loggers are raised to CRITICAL here.
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
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "ERROR")


def configure_logging(verbose: bool = False) -> None:
    """Configure the root logger once for a CLI process."""
    level = logging.DEBUG if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.CRITICAL)
