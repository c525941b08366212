"""The budget cap of a run (``--max-cost USD``): no new LLM call once the cap would pass.

Before a document's calls start, the runner asks :meth:`Budget.reserve` for that document's
estimated cost (its calls rendered as :func:`extraction.run.forecast.document_calls`
renders them, priced at the sync price, output at the average per call seen so far in this
run, else the project's, else the prompts' ``max_tokens``). The reservation is granted only
while

    spent + reserved for documents in flight + this document  ≤  cap,

so a run stops *starting* work before the cap, and what is in flight finishes and is kept.
When a document ends its reservation is replaced by what it really cost. Reserving a whole
document (not one call) keeps a document's cells together: a per_variable document is not
left half-asked. "Spent" starts at what the job already cost, so a resumed job's cap is a cap
on the job's total.

Reserving needs a price: a cap on a model without one is refused when the run starts
(:class:`~extraction.errors.FatalRunError`), rather than never stopping.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from config.settings import Settings
from extraction.errors import FatalRunError
from extraction.llm.prices import Price, cost
from extraction.run.forecast import document_calls
from extraction.run.jobs import BUDGET_REASON
from extraction.run.results import DocumentInput, DocumentResult, PromptInfo, VariableInfo

if TYPE_CHECKING:
    from extraction.run.plan import RunPlan

__all__ = ["BUDGET_REASON", "Budget", "Reservation", "budget_for_run", "open_budget"]



@dataclass(frozen=True)
class Reservation:
    """A document's estimated cost, held while its calls are in flight."""

    usd: float


class Budget:
    """Spent and in-flight dollars of one run against its cap (thread-safe)."""

    def __init__(self, cap_usd: float, price: Price, *, spent_usd: float = 0.0,
                 prompts: dict[uuid.UUID, PromptInfo], mode: str, instructor_mode: str,
                 settings: Settings, tokens_out_per_call: float | None = None) -> None:
        self.cap_usd = cap_usd
        self.price = price
        self.spent_usd = spent_usd
        self.in_flight_usd = 0.0
        self._prompts = prompts
        self._mode = mode
        self._instructor_mode = instructor_mode
        self._settings = settings
        self._seen_calls = 0
        self._seen_out = 0
        self._prior_out_per_call = tokens_out_per_call
        self._lock = threading.Lock()
        self.reached = False

    def _out_per_call(self, max_tokens: float) -> float:
        if self._seen_calls:
            return self._seen_out / self._seen_calls
        return self._prior_out_per_call if self._prior_out_per_call is not None else max_tokens

    def estimate(self, document: DocumentInput, variables: Sequence[VariableInfo]) -> float:
        """The document's estimated cost at the sync price (no cache discount: a cap errs
        on the side of stopping early)."""
        shapes = document_calls(document.text, variables, self._prompts, mode=self._mode,
                                instructor_mode=self._instructor_mode, settings=self._settings)
        if not shapes.calls:
            return 0.0
        out = self._out_per_call(shapes.max_tokens / len(shapes.calls)) * len(shapes.calls)
        return cost(self.price, shapes.tokens_in, round(out))

    def reserve(self, document: DocumentInput, variables: Sequence[VariableInfo]
                ) -> Reservation | None:
        """Hold the document's estimated cost, or None (and :attr:`reached`) if it would
        take spent + in flight past the cap."""
        usd = self.estimate(document, variables)
        with self._lock:
            if self.reached or self.spent_usd + self.in_flight_usd + usd > self.cap_usd:
                self.reached = True
                return None
            self.in_flight_usd += usd
        return Reservation(usd)

    def settle(self, reservation: Reservation, result: DocumentResult | None) -> None:
        """Replace the reservation by what the document cost (its calls' priced usage)."""
        with self._lock:
            self.in_flight_usd = max(0.0, self.in_flight_usd - reservation.usd)
            if result is not None:
                self.spent_usd += result.cost_usd or 0.0
                self._seen_calls += result.llm_calls
                self._seen_out += result.tokens_out

    @property
    def reason(self) -> str:
        """``job.error`` of a job the cap stopped."""
        return (f"{BUDGET_REASON}: ${self.spent_usd:.4f} spent of the ${self.cap_usd:.4f} cap; "
                "the next document would pass it. Resume with a higher cap: "
                "`extractflow run resume JOB --max-cost USD`")


def budget_for_run(cap_usd: float | None, *, model: str, price: Price | None,
                   spent_usd: float | None, prompts: dict[uuid.UUID, PromptInfo], mode: str,
                   instructor_mode: str, settings: Settings,
                   tokens_out_per_call: float | None = None) -> Budget | None:
    """The run's budget, or None without a cap.

    Raises:
        FatalRunError: A cap on a model the price table does not know.
    """
    if cap_usd is None:
        return None
    if price is None:
        raise FatalRunError(
            f"a budget cap (--max-cost / EXTRACTFLOW_MAX_COST_USD) needs the price of model "
            f"'{model}', which the price table does not have; add it to a price file "
            "(EXTRACTFLOW_LLM_PRICES_FILE, see docs/cost.md) or run without a cap")
    return Budget(cap_usd, price, spent_usd=spent_usd or 0.0, prompts=prompts, mode=mode,
                  instructor_mode=instructor_mode, settings=settings,
                  tokens_out_per_call=tokens_out_per_call)


def open_budget(session_factory: Callable[[], Any], plan: RunPlan, cap_usd: float | None,
                settings: Settings) -> Budget | None:
    """The budget of a run about to extract, or None when no cap applies.

    The cap is ``cap_usd`` (a flow parameter), else the job's own (``--max-cost``, kept in
    ``job.parameters``), else ``EXTRACTFLOW_MAX_COST_USD``; what the job already spent counts.

    Raises:
        FatalRunError: A cap on a model without a price.
    """
    from extraction.llm.prices import load_prices
    from extraction.models import ProcessingJob
    from extraction.run.forecast import observed_usage

    with session_factory() as session:
        job = session.get(ProcessingJob, plan.job_id)
        stored = (job.parameters or {}).get("max_cost_usd") if job is not None else None
        cap = cap_usd if cap_usd is not None else (
            float(stored) if stored is not None else settings.max_cost_usd)
        if cap is None:
            return None
        spent = job.cost_usd if job is not None else None
        usage = observed_usage(session, plan.project_id, plan.model, plan.mode)
    return budget_for_run(cap, model=plan.model, price=load_prices(settings).get(plan.model),
                          spent_usd=spent, prompts=plan.prompts, mode=plan.mode,
                          instructor_mode=settings.llm_instructor_mode, settings=settings,
                          tokens_out_per_call=usage.tokens_out_per_call)
