"""Agreement between two runs of a project: two prompt versions, two models, or a re-run.

Neither run is gold, so the matching rules are applied symmetrically (dates at the coarser of
the two precisions) and the figures are agreement, not accuracy: per variable the share of
cells on which the two runs agree ("not stated" on both sides is agreement), Cohen's κ
(CATEGORY, BOOLEAN) and Krippendorff's α (nominal; interval for NUMBER), and the cells that
differ — the most confident disagreements first, as those are the ones a reviewer would not
otherwise look at.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from extraction import codebook
from extraction.errors import ValidationError
from extraction.evaluate import agreement
from extraction.evaluate.cells import load_extracted
from extraction.evaluate.matching import MatchRules, Outcome, classify
from extraction.models import VariableType

__all__ = ["Comparison", "Difference", "VariableAgreement", "compare_jobs"]

_AGREE = (Outcome.CORRECT, Outcome.BOTH_ABSENT)


@dataclass(frozen=True)
class Difference:
    """One cell the two runs disagree on."""

    document_id: str
    filename: str
    variable: str
    value_a: Any
    value_b: Any
    confidence_a: float | None
    confidence_b: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class VariableAgreement:
    name: str
    type: VariableType
    cells: int
    agree: int
    kappa: float | None
    alpha: float | None
    alpha_level: str | None

    @property
    def rate(self) -> float | None:
        return self.agree / self.cells if self.cells else None

    def to_dict(self) -> dict[str, Any]:
        return {"variable": self.name, "type": self.type.value, "cells": self.cells,
                "agree": self.agree, "agreement": self.rate, "kappa": self.kappa,
                "alpha": self.alpha, "alpha_level": self.alpha_level}


@dataclass
class Comparison:
    project: str
    job_a: str
    job_b: str
    variables: list[VariableAgreement]
    differences: list[Difference] = field(default_factory=list)
    total_differences: int = 0

    def to_dict(self) -> dict[str, Any]:
        cells = sum(v.cells for v in self.variables)
        agree = sum(v.agree for v in self.variables)
        return {"project": self.project, "job_a": self.job_a, "job_b": self.job_b,
                "cells": cells, "agree": agree, "agreement": agree / cells if cells else None,
                "variables": [v.to_dict() for v in self.variables],
                "differences_total": self.total_differences,
                "differences": [d.to_dict() for d in self.differences]}


def _finite(value: float) -> float | None:
    return None if value is None or np.isnan(value) else float(value)


def compare_jobs(session: Session, job_a: str | uuid.UUID, job_b: str | uuid.UUID, *,
                 top: int = 20, rules: MatchRules | None = None) -> Comparison:
    """Compare the extractions of two jobs of one project, cell by cell.

    Only cells both jobs extracted are compared.

    Raises:
        NotFoundError: a job that does not exist.
        ValidationError: jobs of two different projects, or the same job twice.
    """
    from extraction.review.feedback import get_job

    first, second = get_job(session, job_a), get_job(session, job_b)
    if first.id == second.id:
        raise ValidationError("compare two different jobs", field="job_b", instance=str(job_b))
    if first.project_id != second.project_id:
        raise ValidationError(f"jobs {first.id} and {second.id} belong to different projects",
                              field="job_b", instance=str(job_b))
    rules = rules or MatchRules()
    project = codebook.get_project(session, first.project_id)
    a_cells = load_extracted(session, project, job_id=first.id).cells
    b_cells = load_extracted(session, project, job_id=second.id).cells
    comparison = Comparison(project=project.name, job_a=str(first.id), job_b=str(second.id),
                            variables=[])
    differences: list[Difference] = []
    for variable in codebook.list_variables(session, project):
        vtype = variable.type
        pairs = [(key[0], a, b_cells[key]) for key, a in a_cells.items()
                 if key[1] == variable.name and key in b_cells]
        agree = 0
        for document_id, a, b in pairs:
            # a failed cell has no answer, so it agrees with nothing (not even another failure)
            same = not a.failed and not b.failed and classify(
                vtype, a.value, b.value, rules, symmetric=True)[0] in _AGREE
            if same:
                agree += 1
            else:
                differences.append(Difference(document_id, a.filename, variable.name,
                                              None if a.failed else a.value,
                                              None if b.failed else b.value,
                                              a.confidence, b.confidence))
        kappa = alpha = None
        level = None
        if vtype in (VariableType.CATEGORY, VariableType.BOOLEAN):
            level = "nominal"
            la = [agreement.nominal_label(vtype, a.value, a.failed) for _, a, _ in pairs]
            lb = [agreement.nominal_label(vtype, b.value, b.failed) for _, _, b in pairs]
            kappa = _finite(agreement.cohen_kappa(la, lb))
            alpha = _finite(agreement.alpha_nominal(la, lb))
        elif vtype is VariableType.NUMBER:
            level = "interval"
            xa = np.array([agreement.interval_value(a.value, a.failed) for _, a, _ in pairs], dtype=np.float64)
            xb = np.array([agreement.interval_value(b.value, b.failed) for _, _, b in pairs], dtype=np.float64)
            alpha = _finite(agreement.alpha_interval(xa, xb))
        comparison.variables.append(VariableAgreement(variable.name, vtype, len(pairs), agree,
                                                      kappa, alpha, level))
    differences.sort(key=lambda d: -max(d.confidence_a or 0.0, d.confidence_b or 0.0))
    comparison.total_differences = len(differences)
    comparison.differences = differences[:max(top, 0)]
    return comparison
