"""The codebook through the CLI: US1 end to end, --json forms, and readable errors."""

from __future__ import annotations

from pathlib import Path

from tests.cli_helpers import run_cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "clinical_trials.codebook.yaml"


def test_us1_through_the_cli(db_url: str) -> None:
    created = run_cli("project", "create", "trials", "-d", "Trial reports", "--json")
    assert created.exit_code == 0
    project_id = created.json()["id"]
    assert len(project_id) == 36

    added = run_cli("variable", "add", "trials", "phase", "--type", "category",
                    "-C", "Phase 1", "-C", "Phase 2", "-i", "The phase", "--json")
    assert added.exit_code == 0, added.stderr
    assert added.json()["categories"] == ["Phase 1", "Phase 2"]
    assert run_cli("variable", "add", "trials", "enrollment", "-t", "NUMBER").exit_code == 0

    before = run_cli("project", "show", project_id, "--json").json()["schema_version"]
    updated = run_cli("variable", "update", "trials", "phase", "-i", "Phase as reported",
                      "--json")
    assert updated.json()["version"] == 2
    shown = run_cli("project", "show", "trials", "--json").json()
    assert shown["schema_version"] == before + 1
    assert [v["name"] for v in shown["variables"]] == ["phase", "enrollment"]

    table = run_cli("project", "show", "trials")
    assert "phase" in table.stdout and "Phase 1, Phase 2" in table.stdout

    history = run_cli("variable", "history", "trials", "phase", "--json").json()
    assert [h["change"] for h in history] == ["created", "updated"]


def test_project_list_pages(db_url: str) -> None:
    for name in ("a", "b", "c"):
        run_cli("project", "create", name)
    page = run_cli("project", "list", "--limit", "2", "--offset", "1", "--json").json()
    assert page["total"] == 3 and [p["name"] for p in page["items"]] == ["b", "c"]
    assert "Projects 1–3 of 3" in run_cli("project", "list").stdout


def test_delete_asks_for_confirmation(db_url: str) -> None:
    run_cli("project", "create", "doomed")
    refused = run_cli("project", "delete", "doomed", input="n\n")
    assert refused.exit_code == 1
    assert run_cli("project", "show", "doomed").exit_code == 0
    assert run_cli("project", "delete", "doomed", "--yes").exit_code == 0
    assert run_cli("project", "show", "doomed").exit_code == 3


def test_unknown_project_is_a_clear_error(db_url: str) -> None:
    human = run_cli("project", "show", "ghost")
    assert human.exit_code == 3
    assert "no project with id or name 'ghost'" in human.stderr
    assert "Traceback" not in human.stderr + human.stdout
    problem = run_cli("project", "show", "ghost", "--json").json()["error"]
    assert problem["title"] == "Not found" and problem["instance"] == "ghost"
    assert problem["type"].endswith("/not-found")


def test_unknown_variable_and_duplicate_names(db_url: str) -> None:
    run_cli("project", "create", "p")
    missing = run_cli("variable", "show", "p", "nope", "--json")
    assert missing.exit_code == 3
    assert "has no variable 'nope'" in missing.json()["error"]["detail"]
    run_cli("variable", "add", "p", "x", "-t", "TEXT")
    dup = run_cli("variable", "add", "p", "x", "-t", "TEXT", "--json")
    assert dup.exit_code == 5 and dup.json()["error"]["field"] == "name"
    assert run_cli("project", "create", "p").exit_code == 5


def test_bad_variable_name_and_type_rules(db_url: str) -> None:
    run_cli("project", "create", "p")
    bad = run_cli("variable", "add", "p", "Bad-Name", "-t", "TEXT")
    assert bad.exit_code == 4 and "not a safe variable name" in bad.stderr
    reserved = run_cli("variable", "add", "p", "document_id", "-t", "TEXT", "--json")
    assert reserved.json()["error"]["field"] == "name"
    no_cats = run_cli("variable", "add", "p", "phase", "-t", "CATEGORY", "--json")
    assert no_cats.json()["error"]["field"] == "categories"
    stray = run_cli("variable", "add", "p", "n", "-t", "NUMBER", "-C", "a")
    assert stray.exit_code == 4 and "only for CATEGORY" in stray.stderr


def test_codebook_apply_dry_run_and_export(db_url: str, tmp_path: Path) -> None:
    dry = run_cli("codebook", "apply", str(EXAMPLE), "--dry-run", "--json").json()
    assert dry["dry_run"] and len(dry["changes"]) == 9
    assert run_cli("project", "show", "clinical-trials").exit_code == 3
    applied = run_cli("codebook", "apply", str(EXAMPLE))
    assert applied.exit_code == 0 and "+ add phase" in applied.stdout
    again = run_cli("codebook", "apply", str(EXAMPLE))
    assert "nothing to change" in again.stdout
    out = tmp_path / "cb.yaml"
    assert run_cli("codebook", "export", "clinical-trials", "-o", str(out)).exit_code == 0
    assert run_cli("codebook", "export", "clinical-trials", "-o", str(out)).exit_code == 5
    assert "nothing to change" in run_cli("codebook", "apply", str(out)).stdout


def test_malformed_codebook_names_line(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("project:\n  name: x\nvariables:\n  - name: ok\n   type: TEXT\n")
    result = run_cli("codebook", "apply", str(path), "--json")
    assert result.exit_code == 4
    problem = result.json()["error"]
    assert problem["line"] == 5 and "malformed YAML" in problem["detail"]


def test_db_status_and_upgrade(db_url: str) -> None:
    status = run_cli("db", "status", "--json").json()
    assert status["up_to_date"] is True
    assert run_cli("db", "upgrade", "--json").json()["revision"] == status["head"]
