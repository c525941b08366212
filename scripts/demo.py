"""The README's main command: set up the demo project on embedded defaults and show it.

Later steps (ingest, sample run, feedback, refinement, full run, export) are added here as
the pipeline grows; each step goes through the same CLI a user would type.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODEBOOK = ROOT / "examples" / "clinical_trials.codebook.yaml"


def extractflow(*args: str) -> None:
    """Run one CLI command as a user would, echoing it first."""
    print(f"\n$ extractflow {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, "-m", "extraction", *args], check=True)


def main() -> None:
    extractflow("db", "status")
    extractflow("codebook", "apply", str(CODEBOOK))
    extractflow("project", "show", "clinical-trials")


if __name__ == "__main__":
    main()
