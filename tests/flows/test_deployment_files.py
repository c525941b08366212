"""The Docker files agree with docs/deployment.md (no Docker engine here to run them)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_parses_and_keeps_prefect_private() -> None:
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "prefect-server", "init", "worker"} <= set(services)
    for port in services["prefect-server"].get("ports", []):
        assert str(port).startswith("127.0.0.1:"), "the Prefect UI must not face the public"
    assert "PREFECT_SERVER_API_AUTH_STRING" in services["prefect-server"]["environment"]
    worker_env = services["worker"]["environment"]
    for key in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "EXTRACTFLOW_DATABASE_URL",
                "EXTRACTFLOW_LLM_BASE_URL"):
        assert key in worker_env
    assert "extractflow db upgrade" in services["init"]["command"]


def test_dockerfile_starts_a_worker_on_the_documented_pool() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    docs = (ROOT / "docs" / "deployment.md").read_text()
    assert '"--pool", "extractflow"' in dockerfile
    assert "prefect worker start --pool extractflow" in docs
    assert "requirements.lock" in dockerfile
    assert "USER extractflow" in dockerfile


def test_every_documented_setting_exists() -> None:
    from config.settings import Settings

    docs = (ROOT / "docs" / "deployment.md").read_text()
    fields = {f"EXTRACTFLOW_{name.upper()}" for name in Settings.model_fields}
    for token in ("EXTRACTFLOW_DATABASE_URL", "EXTRACTFLOW_LLM_CONCURRENCY",
                  "EXTRACTFLOW_GLOBAL_CONCURRENCY_LIMIT"):
        assert token in docs and token in fields
