"""Evaluation against gold data: how good is an extracted dataset, with numbers a paper can cite.

One idea per module: :mod:`.gold` (gold files and reviewed cells), :mod:`.cells` (the stored
values, selected as exports select them), :mod:`.matching` (per-type rules), :mod:`.metrics`
(accuracy, precision, recall, F1), :mod:`.agreement` (Cohen's κ, Krippendorff's α),
:mod:`.bootstrap` (seeded intervals), :mod:`.calibration` (AUROC, ECE, diagram, review budget),
:mod:`.service` (the evaluation), :mod:`.report` (the methods appendix), :mod:`.compare` (two
runs). Heavy libraries (scikit-learn, SciPy, matplotlib) are imported when a number needs them.
"""

from extraction.evaluate.compare import Comparison, compare_jobs
from extraction.evaluate.gold import FEEDBACK, GoldProblem, GoldSet
from extraction.evaluate.matching import MatchRules, Outcome
from extraction.evaluate.report import render, write_report
from extraction.evaluate.service import Evaluation, evaluate_project

__all__ = [
    "FEEDBACK",
    "Comparison",
    "Evaluation",
    "GoldProblem",
    "GoldSet",
    "MatchRules",
    "Outcome",
    "compare_jobs",
    "evaluate_project",
    "render",
    "write_report",
]
