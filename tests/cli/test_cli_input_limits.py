"""Inputs the CLI reads are bounded: no file, device or YAML alias bomb can fill memory."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli

SMALL = {"EXTRACTFLOW_MAX_INPUT_FILE_BYTES": "4096"}


def _bomb(levels: int) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        refs = ", ".join(f"*a{level - 1}" for _ in range(9))
        lines.append(f"a{level}: &a{level} [{refs}]")
    body = "\n".join("    " + line for line in lines)
    return (f"project:\n  name: bomb\n  settings:\n{body}\n"
            "variables:\n  - name: x\n    type: TEXT\n")


def test_a_yaml_alias_bomb_is_refused(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb(9))
    result = run_cli("codebook", "apply", str(path), "--json")
    assert result.exit_code == 4, result.stdout + result.stderr
    assert "expands to more than 100,000 values" in result.json()["error"]["detail"]
    assert "bomb" not in str(run_cli("project", "list", "--json").json())  # nothing stored
    small = tmp_path / "ok.yaml"
    small.write_text(_bomb(2))  # 9 × 9 × 9 values: fine
    assert run_cli("codebook", "apply", str(small)).exit_code == 0


def test_self_referring_yaml_is_refused(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text("project:\n  name: loop\n  settings: &s {again: *s}\nvariables: []\n")
    result = run_cli("codebook", "apply", str(path))
    assert result.exit_code == 4 and "refers to itself" in result.stderr


@pytest.mark.parametrize("command", [["codebook", "apply", "/dev/zero"],
                                     ["prompt", "set", "trials", "x", "--user-file",
                                      "/dev/zero"]])
def test_dev_zero_gives_a_clear_message(db_url: str, command: list[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in SMALL.items():
        monkeypatch.setenv(key, value)
    run_cli("project", "create", "trials")
    run_cli("variable", "add", "trials", "x", "-t", "TEXT")
    result = run_cli(*command, "--json")
    assert result.exit_code == 4, result.stdout + result.stderr
    detail = result.json()["error"]["detail"]
    assert "/dev/zero is larger than 4,096 bytes" in detail
    assert "EXTRACTFLOW_MAX_INPUT_FILE_BYTES" in detail


def test_review_import_refuses_huge_or_odd_files(db_url: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in SMALL.items():
        monkeypatch.setenv(key, value)
    big = tmp_path / "big.xlsx"
    big.write_bytes(b"x" * 5000)
    assert "more than 4,096" in run_cli("review", "import", str(big)).stderr
    packed = tmp_path / "packed.xlsx"
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/worksheets/sheet1.xml", "0" * 200_000)
    refused = run_cli("review", "import", str(packed), "--json")
    assert refused.exit_code == 4 and "unpacks to" in refused.json()["error"]["detail"]
    device = run_cli("review", "import", "/dev/zero")
    assert device.exit_code == 4 and "not a regular file" in device.stderr
