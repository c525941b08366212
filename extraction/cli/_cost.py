"""The cost side of `extractflow run …`: the estimate before a run and the budget cap.

``--estimate`` prints the run's forecast (:mod:`extraction.run.forecast`) and keeps nothing;
``--max-cost`` needs the model's price, so a cap on an unpriced model is refused before a job
exists; a job its cap stopped resumes only with a higher cap.
"""

from __future__ import annotations

from typing import Any

from config.settings import get_settings
from extraction.cli._common import console, db_session, emit_json
from extraction.errors import ValidationError
from extraction.models import JobKind, ProcessingJob
from extraction.run import jobs

__all__ = ["check_cap", "new_cap", "print_estimate"]


def print_estimate(kind: JobKind, project: str, *, json_out: bool, max_cost: float | None = None,
              **options: Any) -> None:
    """Print the run's forecast; nothing is kept (a prompt generated on the way neither)."""
    from extraction.run.forecast import forecast_run

    settings = get_settings()
    with db_session() as s:
        forecast = forecast_run(s, settings, kind=kind, project=project, **options)
        s.rollback()
    cap = max_cost if max_cost is not None else settings.max_cost_usd
    if cap is not None and forecast.cost_sync_usd:
        share = min(1.0, cap / forecast.cost_sync_usd)
        forecast.notes.append(f"the ${cap:.4f} cap covers about {share:.0%} of this run at "
                              "the sync price" + ("" if share < 1 else ": it should not stop"))
    if json_out:
        emit_json(forecast.to_dict())
        return
    for line in forecast.lines():
        console.print(line, markup=False, highlight=False)


def check_cap(settings: Any, model: str | None, cap: float | None) -> None:
    """A cap needs the model's price: refuse before anything starts."""
    from extraction.llm.prices import load_prices

    cap = cap if cap is not None else settings.max_cost_usd
    if cap is not None and load_prices(settings).get(model) is None:
        raise ValidationError(
            f"--max-cost needs the price of model '{model}', which the price table does not "
            "have; add it to a price file (EXTRACTFLOW_LLM_PRICES_FILE, see docs/cost.md) or "
            "run without a cap", field="max_cost")


def new_cap(s: Any, row: ProcessingJob, max_cost: float | None, settings: Any) -> None:
    """Store a resumed job's new cap; a job its cap stopped needs one above what it spent."""
    old = (row.parameters or {}).get("max_cost_usd")
    cap = max_cost if max_cost is not None else old
    if jobs.stopped_by_budget(row) and (max_cost is None or (old is not None and cap <= old)):
        spent = row.cost_usd or 0.0
        raise ValidationError(
            f"job {row.id} stopped at its budget cap (${spent:.4f} spent of "
            f"${float(old or 0):.4f}): resume it with a higher cap, e.g. --max-cost "
            f"{max(float(old or 0) * 2, spent + 0.01):.2f}", field="max_cost")
    check_cap(settings, row.model, cap)
    row.parameters = {**(row.parameters or {}), "max_cost_usd": cap}
    s.flush()
