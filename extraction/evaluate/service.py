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

__all__ = ["Evaluation", "Interval", "VariableResult", "bootstrap_statistic", "evaluate_project"]

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
    """Versions of the statistics libraries, from the modules the evaluation imported."""
    import sys

    found = {}
    for name, module in (("scikit-learn", "sklearn"), ("scipy", "scipy"), ("numpy", "numpy"),
                         ("krippendorff", "krippendorff")):
        version = getattr(sys.modules.get(module), "__version__", None)
        if version is None and module in sys.modules:
            try:  # krippendorff has no __version__ (a metadata look-up scans sys.path)
                version = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                version = None
        if version:
            found[name] = version
    return found


def _bincount_rows(codes: np.ndarray, size: int) -> np.ndarray:
    """Per row of ``codes`` (resamples × documents), how often each code 0..size-1 occurs."""
    offsets = np.arange(codes.shape[0], dtype=np.int64)[:, None] * size
    flat = np.bincount((codes + offsets).ravel(), minlength=codes.shape[0] * size)
    return flat.reshape(codes.shape[0], size)


@dataclass
class _Layout:
    """A variable's cells laid out by document, for the bootstrap.

    ``joint[d]`` is ``(outcome · L + gold label) · L + extracted label`` for document d (L = 1
    for types without κ/α), or ``size`` when the document has no cell of this variable; so a
    resample's counts are one ``bincount``. ``terms`` (NUMBER) are the per-document
    :func:`~extraction.evaluate.agreement.interval_terms`, which a resample only sums.
    """

    type: VariableType
    labels: int
    joint: np.ndarray
    terms: list[np.ndarray]

    @property
    def size(self) -> int:
        return len(Outcome) * self.labels * self.labels

    def statistic(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``([accuracy, P, R, F1, κ, α] × resamples, outcome counts resamples × 6)``."""
        table = _bincount_rows(self.joint[index], self.size + 1)[:, :self.size]
        table = table.reshape(-1, len(Outcome), self.labels, self.labels)
        per_outcome = table.sum(axis=(2, 3))
        out = metrics.scores_from_counts(per_outcome)
        nan = np.full(out.shape[1:], np.nan)
        if self.type in _NOMINAL:
            pairs = table.sum(axis=1)
            kappa = agreement.kappa_from_table(pairs)
            alpha = agreement.alpha_nominal_from_table(pairs)
        elif self.type is VariableType.NUMBER:
            kappa = nan
            alpha = agreement.alpha_from_sums(*(t[index].sum(axis=-1) for t in self.terms))
        else:
            kappa = alpha = nan
        return np.concatenate([out, np.stack([kappa, alpha])]), per_outcome


def bootstrap_statistic(layouts: list[_Layout]) -> Any:
    """The one bootstrap statistic: every variable's six values, then the overall four.

    SciPy resamples document indices; every figure comes from the same resamples, so a
    document drawn twice counts twice in every variable and in the overall scores alike.
    """
    def statistic(index: np.ndarray, axis: int = -1) -> np.ndarray:
        index = np.moveaxis(index, axis, -1)
        shape = index.shape[:-1]
        index = index.reshape(-1, index.shape[-1])
        parts, total = [], np.zeros((index.shape[0], len(Outcome)), dtype=np.int64)
        for layout in layouts:
            values, per_outcome = layout.statistic(index)
            parts.append(values)
            total += per_outcome
        parts.append(metrics.scores_from_counts(total))
        return np.concatenate(parts).reshape(-1, *shape)

    return statistic


def _intervals(names: tuple[str, ...], point: list[float], low: np.ndarray,
               high: np.ndarray) -> dict[str, Interval]:
    return {name: Interval(metrics.as_float(p), metrics.as_float(lo), metrics.as_float(hi))
            for name, p, lo, hi in zip(names, point, low, high)}


@dataclass
class _Scored:
    """One variable's cells, classified, with its point estimates."""

    variable: Variable
    gold_cells: int
    outcomes: np.ndarray
    confidence: np.ndarray
    right: np.ndarray
    point: list[float]
    layout: _Layout
    level: str | None
    f1s: list[float]
    versions: Counter[str]


def _score_variable(variable: Variable, pairs: list[tuple[Any, ExtractedCell]],
                    documents: list[int], gold_cells: int, rules: MatchRules,
                    n_documents: int) -> _Scored:
    """Classify one variable's cells and compute its point estimates (the libraries')."""
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
    point = list(metrics.scores(outcomes))
    level: str | None = None
    labels = 1
    gold_codes = extracted_codes = np.zeros(len(pairs), dtype=np.int64)
    where = np.asarray(documents, dtype=np.int64)
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
        for term in agreement.interval_terms(a, b):
            full = np.zeros(n_documents, dtype=np.float64)
            full[where] = term
            terms.append(full)
        point += [np.nan, agreement.alpha_interval(a, b)]
    else:
        point += [np.nan, np.nan]
    layout = _Layout(vtype, labels, np.empty(0, dtype=np.int64), terms)
    layout.joint = np.full(n_documents, layout.size, dtype=np.int64)
    layout.joint[where] = (outcomes * labels + gold_codes) * labels + extracted_codes
    versions = Counter(f"v{c.prompt_version}" if c.prompt_version is not None else "?"
                       for _, c in pairs)
    return _Scored(variable, gold_cells, outcomes, confidence, right, point, layout, level,
                   f1s, versions)


def _result(scored: _Scored, low: np.ndarray, high: np.ndarray, bins: int) -> VariableResult:
    v = scored.variable
    return VariableResult(
        name=v.name, type=v.type, gold_cells=scored.gold_cells,
        not_extracted=scored.gold_cells - len(scored.outcomes),
        counts=metrics.counts(scored.outcomes),
        stats=_intervals(STATISTICS, scored.point, low, high), alpha_level=scored.level,
        mean_token_f1=float(np.mean(scored.f1s)) if scored.f1s else None,
        calibration=calibration(scored.confidence, scored.right, bins),
        prompt_versions=dict(scored.versions),
    )


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
    document_index: dict[str, int] = {}
    matched = []
    cells = extracted.cells
    for var in variables:
        name = var.name
        golds = by_variable.get(name, [])
        pairs, documents = [], []
        for document_id, value in golds:
            found = cells.get((document_id, name))
            if found is not None:
                pairs.append((value, found))
                documents.append(document_index.setdefault(document_id, len(document_index)))
        matched.append((var, pairs, documents, len(golds)))
    n_documents = len(document_index)
    scored = [_score_variable(var, pairs, documents, gold_cells, rules, n_documents)
              for var, pairs, documents, gold_cells in matched]
    total = np.zeros(len(Outcome), dtype=np.int64)
    for item in scored:
        total += np.bincount(item.outcomes, minlength=len(Outcome))
    width = len(STATISTICS)
    low, high = confidence_intervals(
        [np.arange(n_documents, dtype=np.int64)], bootstrap_statistic([s.layout for s in scored]),
        config, outputs=width * len(scored) + len(metrics.SCORES))
    results = [_result(item, low[i * width:(i + 1) * width], high[i * width:(i + 1) * width],
                       bins) for i, item in enumerate(scored)]
    tail = slice(width * len(scored), None)
    overall = _intervals(metrics.SCORES, list(metrics.scores_from_counts(total)), low[tail],
                         high[tail])
    confidence = np.concatenate([s.confidence for s in scored]) if scored else np.empty(0)
    right = np.concatenate([s.right for s in scored]) if scored else np.empty(0, dtype=bool)
    return Evaluation(
        project=proj.name, project_id=str(proj.id), schema_version=proj.schema_version,
        gold=gold_set, job_id=str(job_row.id) if job_row else None, jobs=extracted.jobs,
        rules=rules, bootstrap=config, variables=results,
        overall_counts=metrics.Counts(int(total.sum()), *(int(x) for x in total)),
        overall=overall, calibration=calibration(confidence, right, bins),
        budget=review_budget(confidence, right), documents=n_documents,
        libraries=_libraries(),
    )
