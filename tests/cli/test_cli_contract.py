"""The CLI's own contract: usage errors are invalid input (exit 4, --json honoured), short
ids work everywhere `job list` / `docs list` / `job results` print them, database URLs that
cannot work get a clear message, and no URL secret is ever printed."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from config.settings import mask_url
from extraction.models import Extraction
from testing.extraction_factory import add_documents, add_job, make_project
from tests.cli_helpers import run_cli


@pytest.mark.parametrize("args", [["run", "sample", "p", "--n", "0"],
                                  ["run", "sample", "p", "--n", "abc"],
                                  ["project", "show"], ["no-such-command"]])
def test_usage_errors_are_invalid_input_and_honour_json(args: list[str]) -> None:
    human = run_cli(*args)
    assert human.exit_code == 4, human.stdout + human.stderr
    assert "Error: Invalid usage" in human.stderr and "╭" not in human.stderr
    problem = run_cli(*args, "--json")
    assert problem.exit_code == 4
    error = problem.json()["error"]
    assert error["title"] == "Invalid usage" and error["type"].endswith("validation-error")
    assert error["usage"].endswith("--help")


def test_feedback_add_and_sample_docs_take_8_character_ids(session: Session) -> None:
    project = make_project(session, "trials", [{"name": "sponsor", "type": "TEXT"}])
    (doc,) = add_documents(session, project, 1)
    add_job(session, project, {(doc, "sponsor"): "Acme"})
    session.commit()
    extraction_id = str(session.scalar(select(Extraction.id)))
    added = run_cli("feedback", "add", extraction_id[:8], "--correct", "--json")
    assert added.exit_code == 0, added.stderr
    assert added.json()["extraction_id"] == extraction_id
    unknown = run_cli("feedback", "add", "abcdef12", "--correct")
    assert unknown.exit_code == 3 and "no extraction with id 'abcdef12'" in unknown.stderr
    # `run sample --docs` resolves the prefix before it starts anything.
    missing = run_cli("run", "sample", "trials", "--docs", "abcdef12", "--json")
    assert missing.exit_code == 3 and "abcdef12" in missing.json()["error"]["detail"]


@pytest.mark.parametrize(("url", "message"), [
    ("postgresql://u:sekret@localhost:notaport/db", "the port is not a number"),
    ("foo://x/y", "unknown database kind (foo)"),
    ("mysql://u:sekret@h/db", "its driver is not installed"),
    ("nonsense", "not a usable database URL"),
])
def test_malformed_database_urls_are_explained(url: str, message: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTRACTFLOW_DATABASE_URL", url)
    result = run_cli("project", "list")
    assert result.exit_code == 7, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "sekret" not in result.stderr
    assert run_cli("db", "status", "--json").json()["error"]["field"] == "database_url"


@pytest.mark.parametrize(("url", "masked"), [
    ("postgresql://u@h:1/x?password=sekret", "postgresql://u@h:1/x?password=***"),
    ("postgresql://u:sekret@h/x?sslmode=require&password=sekret&application_name=a",
     "postgresql://u:***@h/x?sslmode=require&password=***&application_name=a"),
    ("http://user:sekret@host/v1", "http://***@host/v1"),
    ("https://sekret@host", "https://***@host"),
    ("http://h:8000/v1?api_key=sekret", "http://h:8000/v1?api_key=***"),
    ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
])
def test_mask_url_hides_every_form_of_secret(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_db_commands_never_print_a_query_password(db_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("the ?password= form is libpq's")
    monkeypatch.setenv("EXTRACTFLOW_DATABASE_URL", db_url + "&password=sekret")
    for args in (["db", "upgrade"], ["db", "upgrade", "--json"], ["db", "status"],
                 ["db", "status", "--json"]):
        result = run_cli(*args)
        assert result.exit_code == 0, result.stderr
        assert "sekret" not in result.stdout + result.stderr and "password=***" in result.stdout


def test_llm_check_never_prints_url_credentials(fake_llm, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    url = fake_llm.base_url.replace("http://", "http://user:sekret@")
    monkeypatch.setenv("EXTRACTFLOW_LLM_BASE_URL", url)
    for args in (["llm", "check"], ["llm", "check", "--json"]):
        result = run_cli(*args)
        assert "sekret" not in result.stdout + result.stderr, result.stdout + result.stderr
    fake_llm.api_key = "another-key"  # a failing check prints the endpoint in its error
    failed = run_cli("llm", "check")
    assert failed.exit_code == 10 and "sekret" not in failed.stdout + failed.stderr
    assert "***@" in failed.stdout  # the endpoint line
