"""The CLI imports only the command group it runs (a command starts in ~2 s, not ~8 s).

What a user notices is the wait before every command; what we can assert without timing is
which heavy libraries a simple command loads.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from extraction.cli import COMMANDS, load_command

ROOT = Path(__file__).resolve().parents[2]
_HEAVY = ("openai", "instructor", "pymupdf", "openpyxl", "duckdb", "prefect", "pandas")


def _modules_after(tmp_path: Path, *args: str) -> set[str]:
    program = (
        "import sys\n"
        "from extraction.cli import app\n"
        f"sys.argv = ['extractflow', *{list(args)!r}]\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        f"print('loaded:', *(m for m in {_HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
    )
    env = {**os.environ, "EXTRACTFLOW_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    return set(done.stderr.strip().splitlines()[-1].split()[1:])


def test_project_list_loads_no_llm_pdf_or_prefect_library(tmp_path: Path) -> None:
    assert _modules_after(tmp_path, "project", "list", "--json") == set()


def test_every_command_group_loads_and_keeps_its_name() -> None:
    for name in COMMANDS:
        command = load_command(name)
        assert command.name == name
    prompt = load_command("prompt")
    assert "refine" in prompt.commands  # type: ignore[attr-defined]
