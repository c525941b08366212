"""The ``refine-prompts`` flow: corrections from reviews become new prompt versions."""

from __future__ import annotations

import re
from typing import Any

from prefect.artifacts import create_markdown_artifact

from flows.entry import entry_flow
from tasks.refine import refine

__all__ = ["refine_prompts"]


def _artifact_key(project: str, dry_run: bool) -> str:
    # Artifact keys allow lowercase letters, digits and dashes only.
    slug = re.sub(r"[^a-z0-9]+", "-", project.lower()).strip("-") or "project"
    return f"refine-{slug}" + ("-dry-run" if dry_run else "")


@entry_flow(name="refine-prompts")
def refine_prompts(
    project: str,
    job: str | None = None,
    variables: list[str] | None = None,
    dry_run: bool = False,
    model: str | None = None,
) -> dict[str, Any]:
    """Rewrite the prompt of every variable that has new corrections, with the LLM.

    For each such variable the LLM rewrites the instruction block from the current prompt, the
    codebook and the corrections (document excerpt, wrong value, right value, comment); the
    corrections are added as worked examples; the result is stored as a new current prompt
    version (origin ``refined``). Variables without new corrections are left as they are. The
    next sample run uses the new versions. A Markdown artifact shows each diff.

    Args:
        project: Project name or id.
        job: Learn only from corrections on this job's extractions (id or id prefix).
        variables: Refine only these variables (names).
        dry_run: Propose the new versions and show their diffs; store nothing.
        model: The LLM that rewrites the prompts. Default: the project's model setting, else
            EXTRACTFLOW_LLM_MODEL.
    """
    report, markdown = refine(project, job=job, variables=variables, dry_run=dry_run,
                              model=model)
    refined = sum(1 for r in report["results"] if not r["error"])
    create_markdown_artifact(
        key=_artifact_key(report["project"], dry_run),
        markdown=markdown,
        description=f"{'Proposed' if dry_run else 'Refined'} prompts of {report['project']}: "
                    f"{refined} variable(s)",
    )
    return report
