"""Turning the LLM's answers into prompt versions: check, add worked examples, store or diff.

Each answer is checked (heading kept, categories kept, type line kept, about the variable, an
instruction and not a description of the documents, no document delimiters —
:mod:`extraction.review.rewrite_checks`), the corrections are appended as worked examples
after the ones the prompt already had (the newest that fit the example budget), and the draft
is stored as a new current version — origin ``refined``, parent = the current version — or, in
a dry run, only diffed. A draft that scores worse on the held-out part is not stored unless
forced.
"""

from __future__ import annotations

import difflib
import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from extraction import prompts
from extraction.errors import ExtractflowError, NotFoundError, ValidationError
from extraction.models import Prompt, PromptOrigin, Variable, VariableType
from extraction.review import holdout
from extraction.review.refine_ask import RefinedBlock
from extraction.review.refine_request import RefinementPlan, block_without_examples
from extraction.review.rewrite_checks import rewrite_problem

__all__ = ["RefinementResult", "apply_proposals"]


@dataclass
class RefinementResult:
    """What refinement did (or, in a dry run, would do) for one variable."""

    variable: str
    from_version: int
    corrections: int
    to_version: int | None = None
    prompt_id: uuid.UUID | None = None
    rationale: str = ""
    examples_total: int = 0
    examples_shown: int = 0
    diff: str = ""
    error: str | None = None
    user_template: str = ""
    held_out: holdout.HeldOutScore | None = None
    forced: bool = False
    kept_examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None



def _checked_block(plan: RefinementPlan, answer: RefinedBlock) -> str:
    block = block_without_examples(answer.instruction_block.replace("\r\n", "\n").strip())
    block = re.sub(r"^```[a-z]*\n|\n```$", "", block).strip()
    block = prompts.escape_delimiters(block)
    if not block:
        raise ValidationError("the LLM returned an empty instruction block",
                              field="instruction_block")
    if f"`{plan.variable}`" not in block.splitlines()[0] and plan.heading:
        block = f"{plan.heading}\n{block}"
    categories = plan.categories if plan.variable_type is VariableType.CATEGORY else ()
    problem = rewrite_problem(block, plan.current_block, name=plan.variable, label=plan.label,
                              categories=categories)
    if problem:
        raise ValidationError(f"{problem}; it was not stored", field="instruction_block")
    return block


def _examples_fitting(examples: list[dict[str, Any]], budget: int) -> tuple[list[dict], str]:
    rendered = prompts.render_examples(examples, budget) if examples else ""
    shown = sum(line.startswith("- ") for line in rendered.splitlines())
    return (examples[-shown:] if shown else []), rendered


def _dedupe(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for example in examples:
        normal = prompts.normalize_example(example)
        key = json.dumps(normal, sort_keys=True, ensure_ascii=False, default=str)
        seen.pop(key, None)  # a repeated example moves to the newest position
        seen[key] = normal
    return list(seen.values())


def _diff(old: Prompt, new_text: list[str], variable: str, to_version: int) -> str:
    lines = difflib.unified_diff(
        prompts.prompt_text(old), new_text, lineterm="", n=3,
        fromfile=f"{variable} v{old.version} ({old.origin.value})",
        tofile=f"{variable} v{to_version} (refined)")
    return "\n".join(lines)


def apply_proposals(
    session: Session,
    plans: Sequence[RefinementPlan],
    answers: Sequence[RefinedBlock | ExtractflowError],
    *,
    dry_run: bool = False,
    check: Callable[[list[RefinementResult]], dict[str, holdout.HeldOutScore]] | None = None,
    force: bool = False,
) -> list[RefinementResult]:
    """Check each answer, add the worked examples, and store (or only diff) the new versions.

    ``check`` scores the drafts that passed the text checks on the held-out part (by variable
    name); a draft that scores worse than the current prompt is not stored unless ``force``.
    """
    drafts = _drafts(session, plans, answers)
    scores = check([r for r, _ in drafts if r.ok]) if check is not None else {}
    results = []
    for (result, current), plan in zip(drafts, plans, strict=True):
        results.append(result)
        if not result.ok or current is None:
            continue
        score = scores.get(plan.variable)
        result.held_out = score
        if score is not None and score.checked and not score.passed:
            if not force:
                result.error = (f"{score.describe()}: the refined prompt scores worse, so it "
                                "was not stored (--force keeps it anyway)")
                continue
            result.forced = True
        next_version = current.version + 1
        if dry_run:
            draft = Prompt(version=next_version, origin=PromptOrigin.REFINED,
                           system_template=current.system_template,
                           user_template=result.user_template,
                           temperature=current.temperature, max_tokens=current.max_tokens,
                           model=current.model)
            result.to_version = next_version
            result.diff = _diff(current, prompts.prompt_text(draft), plan.variable, next_version)
            continue
        variable = session.get(Variable, plan.variable_id)
        rationale = result.rationale
        if score is not None and score.checked:
            rationale = f"{rationale} [{score.describe()}" + ("; kept with --force]"
                                                             if result.forced else "]")
        stored = prompts.create_prompt_version(
            session, variable, system_template=current.system_template,
            user_template=result.user_template, origin=PromptOrigin.REFINED, parent=current,
            rationale=rationale, examples=result.kept_examples,
            temperature=current.temperature, max_tokens=current.max_tokens, model=current.model)
        result.to_version, result.prompt_id = stored.version, stored.id
        result.diff = prompts.diff_prompts(current, stored)
    return results


def _drafts(
    session: Session,
    plans: Sequence[RefinementPlan],
    answers: Sequence[RefinedBlock | ExtractflowError],
) -> list[tuple[RefinementResult, Prompt | None]]:
    """Each answer checked and turned into its new user template (or an error), not stored."""
    out: list[tuple[RefinementResult, Prompt | None]] = []
    for plan, answer in zip(plans, answers, strict=True):
        current = session.get(Prompt, plan.current_prompt_id)
        if current is None:
            raise NotFoundError(f"prompt {plan.current_prompt_id} disappeared",
                                instance=str(plan.current_prompt_id))
        result = RefinementResult(variable=plan.variable, from_version=current.version,
                                  corrections=len(plan.corrections))
        out.append((result, current))
        if isinstance(answer, ExtractflowError):
            result.error = answer.detail
            continue
        try:
            block = _checked_block(plan, answer)
        except ValidationError as exc:
            result.error = exc.detail
            continue
        examples = _dedupe(list(current.examples or [])
                           + [c.as_example() for c in plan.corrections])
        kept, rendered = _examples_fitting(examples, plan.budget_tokens)
        user_template = f"{block}\n{rendered}" if rendered else block
        learned = (f"refined from {len(plan.corrections)} correction(s) of prompt "
                   f"v{', v'.join(sorted({str(c.prompt_version or '?') for c in plan.corrections}))}"
                   f" ({', '.join(sorted({c.filename for c in plan.corrections}))})")
        result.rationale = f"{learned}: {' '.join(answer.rationale.split())}".strip()
        result.examples_total, result.examples_shown = len(examples), len(kept)
        result.user_template = user_template
        result.kept_examples = kept
    return out
