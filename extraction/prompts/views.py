"""Read-only views of prompt versions: JSON for ``--json``, engine values, diffs."""

from __future__ import annotations

import difflib
from typing import Any

from extraction.models import Prompt
from extraction.run.results import PromptInfo

__all__ = ["diff_prompts", "prompt_info", "prompt_text", "prompt_to_dict"]


def prompt_to_dict(prompt: Prompt) -> dict[str, Any]:
    """A JSON-ready view of one prompt version (what ``prompt show --json`` prints)."""
    parent = prompt.parent
    return {
        "id": str(prompt.id),
        "variable_id": str(prompt.variable_id),
        "variable": prompt.variable.name,
        "version": prompt.version,
        "variable_version": prompt.variable_version,
        "is_current": prompt.is_current,
        "origin": prompt.origin.value,
        "parent_id": str(prompt.parent_id) if prompt.parent_id else None,
        "parent_version": parent.version if parent is not None else None,
        "rationale": prompt.rationale,
        "model": prompt.model,
        "temperature": prompt.temperature,
        "max_tokens": prompt.max_tokens,
        "examples": list(prompt.examples or []),
        "system_template": prompt.system_template,
        "user_template": prompt.user_template,
        "created_at": prompt.created_at.isoformat() if prompt.created_at else None,
    }


def prompt_info(prompt: Prompt) -> PromptInfo:
    """The engine's plain value for a prompt version (no session needed afterwards)."""
    return PromptInfo(
        id=prompt.id,
        variable_id=prompt.variable_id,
        version=prompt.version,
        system_template=prompt.system_template,
        user_template=prompt.user_template,
        temperature=prompt.temperature,
        max_tokens=prompt.max_tokens,
        model=prompt.model,
        examples=tuple(dict(e) for e in (prompt.examples or [])),
    )


def prompt_text(prompt: Prompt) -> list[str]:
    """A prompt version as lines: configuration, system message, instruction block."""
    return [
        "[config]",
        f"temperature: {prompt.temperature}",
        f"max_tokens: {prompt.max_tokens}",
        f"model: {prompt.model or '(run default)'}",
        "",
        "[system]",
        *prompt.system_template.splitlines(),
        "",
        "[block]",
        *prompt.user_template.splitlines(),
    ]


def diff_prompts(a: Prompt, b: Prompt, *, context: int = 3) -> str:
    """A unified diff from version ``a`` to version ``b`` (config, system, block); "" if equal."""
    def label(p: Prompt) -> str:
        return f"{p.variable.name} v{p.version} ({p.origin.value})"

    lines = difflib.unified_diff(prompt_text(a), prompt_text(b), fromfile=label(a),
                                 tofile=label(b), lineterm="", n=context)
    return "\n".join(lines)
