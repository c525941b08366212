"""Settings come from the environment when asked for, and never show secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import get_settings
from extraction.errors import LLMError, NotFoundError


def test_defaults_live_under_extractflow_home(isolated_home: Path) -> None:
    settings = get_settings()
    assert settings.home == isolated_home
    assert settings.resolved_database_url == f"sqlite:///{isolated_home / 'extractflow.db'}"


def test_environment_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTRACTFLOW_LLM_MODEL", "model-a")
    assert get_settings().llm_model == "model-a"
    monkeypatch.setenv("EXTRACTFLOW_LLM_MODEL", "model-b")
    assert get_settings().llm_model == "model-b"


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("EXTRACTFLOW_LLM_TIMEOUT=12.5\n")
    assert get_settings().llm_timeout == 12.5


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTRACTFLOW_LLM_API_KEY", "sk-very-secret")
    monkeypatch.setenv("EXTRACTFLOW_DATABASE_URL", "postgresql://u:pa55word@db/x")
    settings = get_settings()
    for text in (repr(settings), str(settings), settings.safe_database_url):
        assert "sk-very-secret" not in text and "pa55word" not in text
    assert settings.llm_api_key.get_secret_value() == "sk-very-secret"


def test_price_table_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTRACTFLOW_LLM_PRICES",
                       '{"gpt-4o-mini": {"input_per_million": 0.15, "output_per_million": 0.6}}')
    price = get_settings().price_for("gpt-4o-mini")
    assert price is not None and price.output_per_million == 0.6
    assert get_settings().price_for("other") is None


def test_problem_details_shape() -> None:
    problem = NotFoundError("no project 'x'", instance="x").to_problem()
    assert problem == {"type": "https://extractflow.dev/problems/not-found",
                       "title": "Not found", "detail": "no project 'x'", "instance": "x"}
    llm = LLMError("rate limited", attempts=4, status_code=429, retryable=True)
    assert llm.to_problem()["attempts"] == 4 and llm.retryable


def test_local_profile_fills_in_only_what_is_not_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTRACTFLOW_LLM_PROFILE", "local")
    settings = get_settings()
    assert settings.llm_base_url == "http://127.0.0.1:8765/v1"
    assert (settings.llm_model, settings.llm_instructor_mode) == (settings.llm_local_model,
                                                                  "tools")
    assert settings.llm_api_key.get_secret_value() == "sk-local"
    monkeypatch.setenv("EXTRACTFLOW_LLM_BASE_URL", "http://127.0.0.1:9000/v1")
    monkeypatch.setenv("EXTRACTFLOW_LLM_CONCURRENCY", "1")
    overridden = get_settings()
    assert overridden.llm_base_url == "http://127.0.0.1:9000/v1"
    assert overridden.llm_concurrency == 1 and overridden.llm_model == settings.llm_local_model
    monkeypatch.setenv("EXTRACTFLOW_LLM_LOCAL_MODEL", "qwen2.5-coder-1.5b")
    assert get_settings().llm_model == "qwen2.5-coder-1.5b"  # the name the server lists
    monkeypatch.delenv("EXTRACTFLOW_LLM_LOCAL_MODEL")
    monkeypatch.setenv("EXTRACTFLOW_LLM_PROFILE", "cloud")
    with pytest.raises(ValueError, match="local"):
        get_settings()


def test_local_profile_matches_the_server_llm_local_starts() -> None:
    # LOCAL_PROFILE repeats extraction.llm.local_model's constants so that reading settings does
    # not import the local-model module; this keeps the two from drifting apart.
    from config.settings import LOCAL_PROFILE
    from extraction.llm import local_model

    assert LOCAL_PROFILE["llm_base_url"] == f"http://127.0.0.1:{local_model.DEFAULT_PORT}/v1"
    assert LOCAL_PROFILE["llm_api_key"].get_secret_value() == local_model.API_KEY
    from config.settings import DEFAULT_LOCAL_MODEL
    from extraction.llm import model_catalog

    assert DEFAULT_LOCAL_MODEL == model_catalog.DEFAULT_LOCAL_MODEL
    assert model_catalog.get_model(DEFAULT_LOCAL_MODEL).alias == DEFAULT_LOCAL_MODEL
    assert LOCAL_PROFILE["llm_instructor_mode"] == local_model.RECOMMENDED_MODE
