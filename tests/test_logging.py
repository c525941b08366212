"""config/logging.py: the terminal is quieted without silencing the Prefect API's logs."""

from __future__ import annotations

import pytest

from config import logging as xf_logging

LEVEL = "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xf_logging, "_user_console_level", xf_logging._UNREAD)
    monkeypatch.delenv(LEVEL, raising=False)
    monkeypatch.delenv("PREFECT_LOGGING_LEVEL", raising=False)


def test_the_console_is_quieted_and_the_loggers_keep_info_for_the_api() -> None:
    import os

    xf_logging.quiet_prefect_environment()
    assert os.environ[LEVEL] == "WARNING"
    assert "PREFECT_LOGGING_LEVEL" not in os.environ  # INFO lines still reach the run's logs
    xf_logging.set_prefect_console_level("CRITICAL")  # a run in this process
    assert os.environ[LEVEL] == "CRITICAL"


def test_a_console_level_the_user_set_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setenv(LEVEL, "INFO")
    xf_logging.quiet_prefect_environment()
    xf_logging.set_prefect_console_level("CRITICAL")
    assert os.environ[LEVEL] == "INFO"
