"""Is the stored confidence worth anything? AUROC, ECE, a reliability diagram, a review budget.

A cell is *right* when it matches the gold (a matching value, or "not stated" on both sides).
Only cells with a stored confidence count here (a failed cell has none).

* **AUROC** (scikit-learn ``roc_auc_score``): the chance that a right cell has a higher
  confidence than a wrong one; 0.5 is no better than a coin.
* **ECE** (expected calibration error): confidences in ``bins`` equal-width bins; the mean
  over cells of |accuracy of the bin − mean confidence of the bin|.
* **Reliability diagram**: accuracy per bin against confidence, as a PNG (matplotlib, Agg).
* **Review budget**: if a reviewer checks the k % least confident cells (cells without a
  confidence first) and corrects the wrong ones, accuracy goes from x to y.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BUDGET_SHARES",
    "Bin",
    "BudgetRow",
    "Calibration",
    "calibration",
    "review_budget",
    "write_reliability_png",
]

#: Shares of the cells a reviewer checks, in the review-budget table.
BUDGET_SHARES = (0.05, 0.10, 0.20, 0.30)


@dataclass(frozen=True)
class Bin:
    low: float
    high: float
    cells: int
    mean_confidence: float | None
    accuracy: float | None


@dataclass(frozen=True)
class BudgetRow:
    share: float
    reviewed: int
    accuracy_before: float | None
    accuracy_after: float | None


@dataclass
class Calibration:
    cells: int
    right: int
    auroc: float | None
    ece: float | None
    bins: list[Bin] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"cells": self.cells, "right": self.right, "auroc": self.auroc, "ece": self.ece,
                "bins": [b.__dict__ for b in self.bins]}


def calibration(confidence: np.ndarray, right: np.ndarray, bins: int = 10) -> Calibration:
    """AUROC and ECE of ``confidence`` (NaN = none stored) for right (True) vs wrong cells."""
    confidence = np.asarray(confidence, dtype=np.float64)
    right = np.asarray(right, dtype=bool)
    known = ~np.isnan(confidence)
    conf, ok = np.clip(confidence[known], 0.0, 1.0), right[known]
    result = Calibration(cells=int(known.sum()), right=int(ok.sum()), auroc=None, ece=None)
    if conf.size == 0:
        return result
    if 0 < ok.sum() < ok.size:
        from sklearn.metrics import roc_auc_score

        result.auroc = float(roc_auc_score(ok, conf))
    edges = np.linspace(0.0, 1.0, bins + 1)
    # right-closed bins, the first one closed on both sides: 1.0 falls in the last bin
    index = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    gap = 0.0
    for k in range(bins):
        members = index == k
        count = int(members.sum())
        mean_conf = float(conf[members].mean()) if count else None
        accuracy = float(ok[members].mean()) if count else None
        if count:
            gap += count * abs(accuracy - mean_conf)  # type: ignore[operator]
        result.bins.append(Bin(float(edges[k]), float(edges[k + 1]), count, mean_conf, accuracy))
    result.ece = gap / conf.size
    return result


def review_budget(confidence: np.ndarray, right: np.ndarray,
                  shares: tuple[float, ...] = BUDGET_SHARES) -> list[BudgetRow]:
    """Accuracy before and after reviewing the least confident ``share`` of all cells.

    Reviewed cells are taken to be right afterwards (the reviewer corrects them); cells
    without a confidence are reviewed first, ties in stable order.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    right = np.asarray(right, dtype=bool)
    n = right.size
    if n == 0:
        return [BudgetRow(s, 0, None, None) for s in shares]
    order = np.argsort(np.where(np.isnan(confidence), -np.inf, confidence), kind="stable")
    wrong_first = np.cumsum(~right[order])
    before = float(right.mean())
    rows = []
    for share in shares:
        reviewed = min(n, math.ceil(share * n))
        fixed = int(wrong_first[reviewed - 1]) if reviewed else 0
        rows.append(BudgetRow(share, reviewed, before, (int(right.sum()) + fixed) / n))
    return rows


def write_reliability_png(result: Calibration, path: Path, *, title: str) -> Path:
    """Draw the reliability diagram of ``result`` into ``path`` (PNG) and return it."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    try:
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1,
                label="perfect calibration")
        filled = [b for b in result.bins if b.cells]
        ax.bar([(b.low + b.high) / 2 for b in filled], [b.accuracy for b in filled],
               width=[(b.high - b.low) * 0.9 for b in filled], color="#4c72b0",
               edgecolor="black", linewidth=0.5, label="accuracy per bin")
        ax.plot([b.mean_confidence for b in filled], [b.accuracy for b in filled], "o",
                color="#dd8452", markersize=4, label="mean confidence of the bin")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("stored confidence")
        ax.set_ylabel("share of cells matching the gold")
        ece = "–" if result.ece is None else f"{result.ece:.3f}"
        ax.set_title(f"{title}\n{result.cells} cells, ECE {ece}", fontsize=9)
        ax.legend(loc="upper left", fontsize=7)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path
