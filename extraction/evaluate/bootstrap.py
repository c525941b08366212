"""95 % bootstrap confidence intervals, seeded, with SciPy's ``scipy.stats.bootstrap``.

Documents are the resampled units (a paired bootstrap: a resample draws documents with
replacement and keeps each one's gold and extracted values together), which also keeps the
cells of one document together in the overall figures. The interval is the percentile
interval (resamples where a statistic is undefined left out of its interval): BCa's jackknife costs one statistic per document, which at 10,000 documents is far
slower than the resampling itself. Statistics are evaluated on batches of resamples at once,
with the batch sized so a batch holds at most ``MAX_BATCH_CELLS`` cells: memory stays flat
however many documents there are.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["MAX_BATCH_CELLS", "BootstrapConfig", "confidence_intervals"]

#: Resampled cells held at once (resamples per batch × documents).
MAX_BATCH_CELLS = 2_000_000


@dataclass(frozen=True)
class BootstrapConfig:
    """How intervals are computed; the report states all three."""

    resamples: int = 1000
    seed: int = 12345
    confidence: float = 0.95

    @classmethod
    def from_settings(cls, settings: object) -> BootstrapConfig:
        return cls(resamples=settings.eval_bootstrap_resamples,  # type: ignore[attr-defined]
                   seed=settings.eval_bootstrap_seed)  # type: ignore[attr-defined]


def confidence_intervals(
    data: Sequence[np.ndarray],
    statistic: Callable[..., np.ndarray],
    config: BootstrapConfig,
    *,
    outputs: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds for each of the ``outputs`` values ``statistic`` returns.

    Args:
        data: paired 1-D arrays, one entry per document.
        statistic: ``statistic(*arrays, axis=-1)`` → an array of ``outputs`` values per
            resample (NaN where a value is undefined in a resample).
        config: resamples, seed, confidence level.
        outputs: how many values the statistic returns.

    Returns:
        ``(low, high)``, each of length ``outputs``; NaN where fewer than two documents.
        Resamples in which a value is undefined (κ of a resample holding a single label) are
        left out of that value's interval.
    """
    from scipy.stats import bootstrap

    n = len(data[0]) if data else 0
    nan = np.full(outputs, np.nan)
    if n < 2:
        return nan, nan.copy()
    batch = max(1, min(config.resamples, MAX_BATCH_CELLS // n))
    with warnings.catch_warnings():
        # A statistic that is NaN or constant in every resample gives a NaN or degenerate
        # interval, which the report shows as such; SciPy's warning about it adds nothing.
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            result = bootstrap(
                tuple(data), statistic, n_resamples=config.resamples, batch=batch,
                vectorized=True, paired=True, axis=-1, method="percentile",
                confidence_level=config.confidence, rng=np.random.default_rng(config.seed),
            )
    # The percentile interval, taken from the bootstrap distribution with NaN resamples left
    # out: SciPy's own interval is NaN as soon as one resample is (a κ of a resample that
    # drew a single label), which on small gold sets would hide every κ interval.
    distribution = np.atleast_2d(np.asarray(result.bootstrap_distribution, dtype=np.float64))
    tail = (1 - config.confidence) / 2 * 100
    low, high = np.full(outputs, np.nan), np.full(outputs, np.nan)
    for k, row in enumerate(distribution.reshape(outputs, -1)):
        if np.isfinite(row).sum() >= 2:
            low[k], high[k] = np.nanpercentile(row, [tail, 100 - tail])
    return low, high
