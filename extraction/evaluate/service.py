"""Evaluate a project's extractions against gold data: the numbers behind `extractflow evaluate`.

The steps: read the gold (:mod:`.gold`), read the selected extractions (:mod:`.cells`),
classify each cell that has both (:mod:`.matching`), then per variable and overall the scores
(:mod:`.metrics`), agreement (:mod:`.agreement`), bootstrap intervals (:mod:`.bootstrap`) and
calibration (:mod:`.calibration`). The result is plain data; :mod:`.report` renders it.

A gold cell whose document has no extraction in the selection is counted as *not extracted*
and left out of the scores (the job did not cover that document); an extraction without gold
is simply not evaluated.
"""

from __future__ import annotations

import importlib.metadata
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from extraction import codebook
from extraction.errors import NotFoundError
from extraction.evaluate import agreement, metrics
from extraction.evaluate.bootstrap import BootstrapConfig, confidence_intervals
from extraction.evaluate.calibration import (
    BudgetRow,
    Calibration,
    calibration,
    review_budget,
)
from extraction.evaluate.cells import ExtractedCell, load_extracted
from extraction.evaluate.gold import FEEDBACK, GoldSet, gold_from_feedback, load_gold
from extraction.evaluate.matching import RIGHT, MatchRules, Outcome, classify
from extraction.models import ProcessingJob, Project, Variable, VariableType

__all__ = ["Evaluation", "Interval", "VariableResult", "evaluate_project", "statistics_of"]

#: The statistics of a variable, in the order the bootstrap returns them.
STATISTICS = (*metrics.SCORES, "kappa", "alpha")
_NOMINAL = (VariableType.CATEGORY, VariableType.BOOLEAN)


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap interval (None where undefined)."""

    value: float | None
    low: float | None
    high: float | None

    def to_dict(self) -> dict[str, float | None]:
        return {"value": self.value, "low": self.low, "high": self.high}


@dataclass
class VariableResult:
    """Everything measured for one variable (``cells`` = 0: no gold for it)."""

    name: str
    type: VariableType
    gold_cells: int
    not_extracted: int
    counts: metrics.Counts
    stats: dict[str, Interval]
    alpha_level: str | None
    mean_token_f1: float | None
    calibration: Calibration
    prompt_versions: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "variable": self.name, "type": self.type.value, "gold_cells": self.gold_cells,
            "not_extracted": self.not_extracted, **self.counts.to_dict(),
            **{k: v.to_dict() for k, v in self.stats.items()},
            "alpha_level": self.alpha_level, "mean_token_f1": self.mean_token_f1,
            "auroc": self.calibration.auroc, "ece": self.calibration.ece,
            "prompt_versions": self.prompt_versions,
        }


@dataclass
class Evaluation:
    """The outcome of :func:`evaluate_project`; :mod:`.report` turns it into documents."""

    project: str
    project_id: str
    schema_version: int
    gold: GoldSet
    job_id: str | None
    jobs: list[dict[str, Any]]
    rules: MatchRules
    bootstrap: BootstrapConfig
    variables: list[VariableResult]
    overall_counts: metrics.Counts
    overall: dict[str, Interval]
    calibration: Calibration
    budget: list[BudgetRow]
    documents: int
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    libraries: dict[str, str] = field(default_factory=dict)

    @property
    def cells(self) -> int:
        return self.overall_counts.cells

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready evaluation (what ``evaluate --json`` prints)."""
        return {
            "project": self.project, "project_id": self.project_id,
            "schema_version": self.schema_version,
            "gold": {"source": self.gold.source, "shape": self.gold.shape,
                     "cells": len(self.gold.cells),
                     "problems": [p.to_dict() for p in self.gold.problems]},
            "job_id": self.job_id, "jobs": self.jobs,
            "documents": self.documents, "cells": self.cells,
            "rules": self.rules.describe(),
            "bootstrap": {"resamples": self.bootstrap.resamples, "seed": self.bootstrap.seed,
                          "confidence": self.bootstrap.confidence, "method": "percentile",
                          "unit": "document"},
            "variables": [v.to_dict() for v in self.variables],
            "overall": {**self.overall_counts.to_dict(),
                        **{k: v.to_dict() for k, v in self.overall.items()}},
            "calibration": self.calibration.to_dict(),
            "review_budget": [r.__dict__ for r in self.budget],
            "created_at": self.created_at.isoformat(),
            "libraries": self.libraries,
        }


def _libraries() -> dict[str, str]:
    found = {}
    for name in ("scikit-learn", "scipy", "krippendorff", "numpy", "matplotlib"):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def _bincount_rows(codes: np.ndarray, size: int) -> np.ndarray:
    """Per row of ``codes`` (resamples × documents), how often each code 0..size-1 occurs."""
    codes = np.atleast_2d(codes)
    offsets = np.arange(codes.shape[0], dtype=np.int64)[:, None] * size
    flat = np.bincount((codes + offsets).ravel(), minlength=codes.shape[0] * size)
    return flat.reshape(codes.shape[0], size)


def statistics_of(vtype: VariableType, labels: int) -> Any:
    """The bootstrap statistic of a variable: ``[accuracy, P, R, F1, κ, α]`` per resample.

    Its first data array is one joint code per document, ``(outcome · L + gold label) · L +
    extracted label`` (L = 1 for types without κ/α), so a resample is one ``bincount``; for
    NUMBER the :func:`~extraction.evaluate.agreement.interval_terms` follow, which a resample
    only sums. κ and α are NaN where the type has none.
    """
    size = len(Outcome) * labels * labels

    def statistic(joint: np.ndarray, *terms: np.ndarray, axis: int = -1) -> np.ndarray:
        joint = np.moveaxis(joint, axis, -1)
        shape = joint.shape[:-1]
        table = _bincount_rows(joint.reshape(-1, joint.shape[-1]), size)
        table = table.reshape(-1, len(Outcome), labels, labels)
        out = metrics.scores_from_counts(table.sum(axis=(2, 3)))
        nan = np.full(out.shape[1:], np.nan)
        if vtype in _NOMINAL:
            pairs = table.sum(axis=1)
            kappa = agreement.kappa_from_table(pairs)
            alpha = agreement.alpha_nominal_from_table(pairs)
        elif vtype is VariableType.NUMBER:
            sums = [np.moveaxis(t, axis, -1).reshape(-1, joint.shape[-1]).sum(axis=-1)
                    for t in terms]
            kappa, alpha = nan, agreement.alpha_from_sums(*sums)
        else:
            kappa = alpha = nan
        return np.concatenate([out, np.stack([kappa, alpha])]).reshape(-1, *shape)

    return statistic


def _intervals(names: tuple[str, ...], point: list[float], low: np.ndarray,
               high: np.ndarray) -> dict[str, Interval]:
    return {name: Interval(metrics.as_float(p), metrics.as_float(lo), metrics.as_float(hi))
            for name, p, lo, hi in zip(names, point, low, high)}


def _evaluate_variable(variable: Variable, pairs: list[tuple[Any, ExtractedCell]],
                       gold_cells: int, rules: MatchRules,
                       config: BootstrapConfig, bins: int,
                       ) -> tuple[VariableResult, np.ndarray, np.ndarray, np.ndarray]:
    """The result of one variable, and its cells' confidences, right flags and outcomes."""
    vtype = variable.type
    outcomes = np.empty(len(pairs), dtype=np.int64)
    f1s: list[float] = []
    for i, (gold, cell) in enumerate(pairs):
        outcome, f1 = classify(vtype, gold, cell.value, rules, failed=cell.failed)
        outcomes[i] = outcome
        if f1 is not None:
            f1s.append(f1)
    confidence = np.array([np.nan if c.confidence is None else c.confidence for _, c in pairs],
                          dtype=np.float64)
    right = np.isin(outcomes, [int(o) for o in RIGHT])
    point = list(metrics.scores(outcomes)) if len(pairs) else [np.nan] * 4
    level: str | None = None
    labels = 1
    gold_codes = extracted_codes = np.zeros(len(pairs), dtype=np.int64)
    terms: list[np.ndarray] = []
    if vtype in _NOMINAL:
        level = "nominal"
        gold_labels = [agreement.nominal_label(vtype, g) for g, _ in pairs]
        extracted_labels = [agreement.nominal_label(vtype, c.value, c.failed) for _, c in pairs]
        gold_codes, extracted_codes, names = agreement.encode(gold_labels, extracted_labels)
        labels = max(len(names), 1)
        point += [agreement.cohen_kappa(gold_labels, extracted_labels),
                  agreement.alpha_nominal(gold_labels, extracted_labels)]
    elif vtype is VariableType.NUMBER:
        level = "interval"
        a = np.array([agreement.interval_value(g) for g, _ in pairs], dtype=np.float64)
        b = np.array([agreement.interval_value(c.value, c.failed) for _, c in pairs],
                     dtype=np.float64)
        terms = list(agreement.interval_terms(a, b))
        point += [np.nan, agreement.alpha_interval(a, b)]
    else:
        point += [np.nan, np.nan]
    joint = (outcomes * labels + gold_codes) * labels + extracted_codes
    low, high = confidence_intervals([joint, *terms], statistics_of(vtype, labels), config,
                                     outputs=len(STATISTICS))
    versions = Counter(f"v{c.prompt_version}" if c.prompt_version is not None else "?"
                       for _, c in pairs)
    result = VariableResult(
        name=variable.name, type=vtype, gold_cells=gold_cells,
        not_extracted=gold_cells - len(pairs), counts=metrics.counts(outcomes),
        stats=_intervals(STATISTICS, point, low, high), alpha_level=level,
        mean_token_f1=float(np.mean(f1s)) if f1s else None,
        calibration=calibration(confidence, right, bins), prompt_versions=dict(versions),
    )
    return result, confidence, right, outcomes


def _overall(per_document: dict[str, np.ndarray], config: BootstrapConfig,
             ) -> tuple[metrics.Counts, dict[str, Interval]]:
    """Pooled scores over every cell; the bootstrap resamples documents with all their cells."""
    table = np.array(list(per_document.values()), dtype=np.int64).reshape(-1, len(Outcome))
    total = table.sum(axis=0)
    point = list(metrics.scores_from_counts(total))

    def statistic(*columns: np.ndarray, axis: int = -1) -> np.ndarray:
        sums = np.stack([np.moveaxis(c, axis, -1).sum(axis=-1) for c in columns], axis=-1)
        return metrics.scores_from_counts(sums)

    low, high = confidence_intervals([table[:, k] for k in range(len(Outcome))], statistic,
                                     config, outputs=len(metrics.SCORES))
    counts = metrics.Counts(int(total.sum()), *(int(x) for x in total))
    return counts, _intervals(metrics.SCORES, point, low, high)


def evaluate_project(
    session: Session,
    project: str | uuid.UUID | Project,
    gold: str | Path,
    *,
    job: str | uuid.UUID | None = None,
    variable: str | None = None,
    strict: bool = False,
    settings: Any = None,
) -> Evaluation:
    """Evaluate the project's extractions against ``gold`` (a CSV/XLSX path, or "feedback").

    Args:
        session: an open session (read only).
        project: name or id.
        gold: a gold file, or ``"feedback"`` for the reviewed cells.
        job: evaluate this job (id or id prefix); default, per cell, the newest COMPLETE job.
        variable: only this variable.
        strict: stop on the first problem in the gold instead of skipping the cell.
        settings: the settings to use (default: read now); tolerances and bootstrap.

    Raises:
        NotFoundError: no such project, job or variable.
        ValidationError: an unreadable gold file, or with ``strict`` a problem in it.
        StateError: nothing extracted to evaluate.
    """
    from config.settings import get_settings
    from extraction.review.feedback import get_job

    settings = settings or get_settings()
    proj = project if isinstance(project, Project) else codebook.get_project(session, project)
    variables = codebook.list_variables(session, proj)
    if variable is not None:
        variables = [v for v in variables if v.name == variable]
        if not variables:
            raise NotFoundError(f"project '{proj.name}' has no variable '{variable}'",
                                field="variable", instance=variable)
    job_row: ProcessingJob | None = get_job(session, job, project=proj) if job else None
    if str(gold).strip().lower() == FEEDBACK:
        gold_set = gold_from_feedback(session, proj, variables)
    else:
        gold_set = load_gold(session, proj, Path(gold), variables, strict=strict)
    extracted = load_extracted(session, proj, job_id=job_row.id if job_row else None)
    rules = MatchRules.from_settings(settings)
    config = BootstrapConfig.from_settings(settings)
    bins = settings.eval_calibration_bins

    by_variable: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for cell in gold_set.cells:
        by_variable[cell.variable].append((cell.document_id, cell.value))
    results: list[VariableResult] = []
    per_document: dict[str, np.ndarray] = {}
    all_conf, all_right = [], []
    for var in variables:
        golds = by_variable.get(var.name, [])
        pairs, documents = [], []
        for document_id, value in golds:
            found = extracted.cells.get((document_id, var.name))
            if found is not None:
                pairs.append((value, found))
                documents.append(document_id)
        result, confidence, right, outcomes = _evaluate_variable(
            var, pairs, len(golds), rules, config, bins)
        results.append(result)
        all_conf.append(confidence)
        all_right.append(right)
        for document_id, outcome in zip(documents, outcomes):
            row = per_document.get(document_id)
            if row is None:
                row = per_document[document_id] = np.zeros(len(Outcome), dtype=np.int64)
            row[outcome] += 1
    overall_counts, overall = _overall(per_document, config)
    confidence = np.concatenate(all_conf) if all_conf else np.empty(0)
    right = np.concatenate(all_right) if all_right else np.empty(0, dtype=bool)
    jobs = _with_job_details(session, extracted.jobs)
    return Evaluation(
        project=proj.name, project_id=str(proj.id), schema_version=proj.schema_version,
        gold=gold_set, job_id=str(job_row.id) if job_row else None, jobs=jobs, rules=rules,
        bootstrap=config, variables=results, overall_counts=overall_counts, overall=overall,
        calibration=calibration(confidence, right, bins), budget=review_budget(confidence, right),
        documents=len(per_document), libraries=_libraries(),
    )


def _with_job_details(session: Session, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The export's job summaries plus the extraction mode of each job."""
    for summary in jobs:
        row = session.get(ProcessingJob, uuid.UUID(summary["job_id"]))
        summary["mode"] = row.mode if row is not None else None
    return jobs
