"""What a run will cost before it starts: documents to do, calls, tokens, dollars and time.

``extractflow run sample|full PROJECT --estimate`` prints a :class:`Forecast`; nothing is
asked of the LLM and no job is created. The figures are built from what the run would do,
with the run's own rules rather than copies of them:

* **documents to do** — the run's document choice (:func:`extraction.run.plan.select_documents`)
  minus the cells the run's re-use rule (:func:`extraction.run.reuse.reusable_cells`) would
  copy: a document with every cell re-usable costs nothing;
* **calls and input tokens** — each call rendered as the extractor sends it
  (:func:`extraction.run.extractor.unit_layout`: the same prompt, the same chunks of a long
  document, the same messages) plus what instructor adds to the request for the configured
  mode (the tool definition or response format). Tokens are the request's JSON characters / 4:
  no tokenizer ships with our dependencies (``tiktoken`` is not installed and downloads its
  encodings at run time), so this is the heuristic used everywhere in extractflow, and it
  is how the fake LLM server counts;
* **output tokens** — the project's observed average per call (earlier jobs with the same
  model and mode, else any), else the schema's maximum (the prompts' ``max_tokens``);
* **cached prefix** — for each call, the longest prefix it shares with the call before and
  with the run's first call (per_document calls share the system message and instruction
  blocks; per_variable calls of one document share the document), if the prompt is long
  enough for the provider to cache it;
* **cost** at the model's sync, batch and cached-prefix prices (:mod:`extraction.llm.prices`),
  or none, said so, for a model without a price;
* **wall time** — calls × seconds per call (the project's observed mean latency, else
  ``estimate_call_seconds``) / the calls in flight (``llm_concurrency``, at most the global
  limit).
"""

from __future__ import annotations

import functools
import json
import math
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config.settings import Settings
from extraction import codebook
from extraction.llm.prices import Price, cost, load_prices
from extraction.models import Document, Extraction, ExtractionStatus, JobKind, ProcessingJob
from extraction.run.estimate import _current
from extraction.run.plan import resolve_options, select_documents
from extraction.run.results import PromptInfo, VariableInfo
from extraction.run.reuse import reusable_cells
from extraction.run.second_opinion import OpinionPolicy

__all__ = ["CallShape", "DocumentCalls", "Forecast", "document_calls", "forecast_run",
           "observed_usage"]

#: How tokens are counted, said in every estimate.
TOKEN_COUNTER = ("characters of the JSON request / 4 (no tokenizer is available offline; "
                 "real tokenizers differ by roughly ±15 % on English text)")
_BATCH = 200


@dataclass(frozen=True)
class CallShape:
    """One call as it would be sent: its input tokens, answer budget and prompt text."""

    tokens_in: int
    max_tokens: int
    prompt: str  # the messages' text, for the cached-prefix estimate


@dataclass
class DocumentCalls:
    """The calls one document would make (an empty list: nothing left to ask)."""

    calls: list[CallShape] = field(default_factory=list)

    @property
    def tokens_in(self) -> int:
        return sum(c.tokens_in for c in self.calls)

    @property
    def max_tokens(self) -> int:
        return sum(c.max_tokens for c in self.calls)


@functools.lru_cache(maxsize=256)
def _request_extra_chars(response_model: type, instructor_mode: str, system: str) -> int:
    """Characters instructor adds to a request in this mode (tool definition, response
    format, schema written into the system message), measured on a rendered request."""
    from instructor.processing.response import handle_response_model

    from extraction.llm.client import INSTRUCTOR_MODES, _schema_class

    messages = [{"role": "system", "content": system}, {"role": "user", "content": "x"}]
    _, kwargs = handle_response_model(_schema_class(response_model),  # type: ignore[arg-type]
                                      mode=INSTRUCTOR_MODES[instructor_mode],
                                      messages=[dict(m) for m in messages], model="m")
    extra = len(json.dumps(kwargs.get("messages", messages))) - len(json.dumps(messages))
    for key in ("tools", "response_format"):
        if kwargs.get(key) is not None:
            extra += len(json.dumps(kwargs[key]))
    return max(0, extra)


def document_calls(text: str, variables: Sequence[VariableInfo],
                   prompts: dict[uuid.UUID, PromptInfo], *, mode: str, instructor_mode: str,
                   settings: Settings) -> DocumentCalls:
    """The calls the extractor would make for ``variables`` of a document with ``text``."""
    from extraction.run.extractor import unit_layout

    out = DocumentCalls()
    if not variables:
        return out
    units = [list(variables)] if mode == "per_document" else [[v] for v in variables]
    for unit in units:
        layout = unit_layout(unit, [prompts[v.id] for v in unit], mode, instructor_mode,
                             settings)
        extra = _request_extra_chars(layout.response_model, instructor_mode, layout.system)
        chunks = layout.chunks(text)
        for chunk in chunks:
            messages = layout.messages(chunk, len(chunks))
            chars = len(json.dumps(messages)) + extra
            out.calls.append(CallShape(
                tokens_in=max(1, chars // 4), max_tokens=layout.max_tokens,
                prompt="\n".join(m["content"] for m in messages)))
    return out


@dataclass(frozen=True)
class Usage:
    """What earlier jobs of the project measured, the basis of output and time estimates."""

    calls: int = 0
    tokens_out: int = 0
    mean_latency_s: float | None = None

    @property
    def tokens_out_per_call(self) -> float | None:
        return self.tokens_out / self.calls if self.calls else None


def observed_usage(session: Session, project_id: uuid.UUID, model: str, mode: str) -> Usage:
    """Output tokens per call and mean call latency of the project's earlier jobs.

    Jobs with the same model and mode are preferred (the answer's size depends on both);
    any job that made calls is the fallback.
    """
    J = ProcessingJob
    base = select(func.coalesce(func.sum(J.llm_calls), 0),
                  func.coalesce(func.sum(J.tokens_out), 0)).where(
        J.project_id == project_id, J.llm_calls > 0)
    calls, tokens = session.execute(base.where(J.model == model, J.mode == mode)).one()
    if not calls:
        calls, tokens = session.execute(base).one()
    latest = session.scalar(select(J.id).where(J.project_id == project_id, J.llm_calls > 0)
                            .order_by(J.created_at.desc()).limit(1))
    latency = None
    if latest is not None:
        mean = session.scalar(select(func.avg(Extraction.latency_ms)).where(
            Extraction.job_id == latest, Extraction.reused_from_id.is_(None),
            Extraction.latency_ms.is_not(None), Extraction.status != ExtractionStatus.FAILED))
        latency = float(mean) / 1000 if mean is not None else None
    return Usage(calls=int(calls), tokens_out=int(tokens), mean_latency_s=latency)


@dataclass
class Forecast:
    """The estimate of one run; :meth:`to_dict` is the ``--json`` shape."""

    project: str
    kind: str
    model: str
    mode: str
    documents: int
    documents_to_do: int
    cells_reused: int
    calls: int
    tokens_in: int
    tokens_out: int
    tokens_cached: int
    output_basis: str
    token_counter: str
    concurrency: int
    seconds_per_call: float
    latency_basis: str
    wall_seconds: float
    price: dict[str, Any] | None
    cost_sync_usd: float | None
    cost_batch_usd: float | None
    cost_cached_usd: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def cache_share(self) -> float:
        return self.tokens_cached / self.tokens_in if self.tokens_in else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cache_share"] = round(self.cache_share, 4)
        data["price_known"] = self.price is not None
        return data

    def lines(self) -> list[str]:
        """The estimate as lines for the terminal."""
        def usd(value: float | None) -> str:
            return "unknown price" if value is None else f"${value:,.4f}"

        out = [
            (f"Estimate for a {self.kind} run of project '{self.project}' "
             f"(model {self.model}, mode {self.mode}) — no LLM call made, no job created"),
            (f"  documents       {self.documents:,} selected, {self.documents_to_do:,} to do "
             f"({self.cells_reused:,} cells re-used from earlier runs)"),
            f"  LLM calls       {self.calls:,}",
            (f"  input tokens    {self.tokens_in:,} (of them ~{self.tokens_cached:,} in a "
             f"shared prefix, {self.cache_share:.0%})"),
            f"  output tokens   {self.tokens_out:,} ({self.output_basis})",
            f"  cost sync       {usd(self.cost_sync_usd)}",
            f"  cost batch      {usd(self.cost_batch_usd)}",
            f"  cost cached     {usd(self.cost_cached_usd)} (shared prefix at the cached rate)",
            (f"  wall time       ~{_duration(self.wall_seconds)} at {self.concurrency} calls "
             f"in flight, {self.seconds_per_call:.1f} s per call ({self.latency_basis})"),
            f"  tokens counted  {self.token_counter}",
        ]
        if self.price is None:
            out.append(f"  No price for model '{self.model}': tokens only. Add it to a price "
                       "file (EXTRACTFLOW_LLM_PRICES_FILE, see docs/cost.md).")
        out += [f"  note: {n}" for n in self.notes]
        return out


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _documents(session: Session, ids: list[uuid.UUID]
               ) -> Iterator[list[tuple[uuid.UUID, str | None, int | None, str | None]]]:
    order = {doc_id: i for i, doc_id in enumerate(ids)}
    for start in range(0, len(ids), _BATCH):
        rows = list(session.execute(
            select(Document.id, Document.text, Document.size_bytes, Document.content_hash)
            .where(Document.id.in_(ids[start:start + _BATCH]))).tuples())
        rows.sort(key=lambda r: order[r[0]])
        yield rows


def _cached_tokens(prompt: str, previous: str | None, first: str | None,
                   tokens_in: int, min_tokens: int) -> int:
    if tokens_in < min_tokens:
        return 0
    shared = max((len(os.path.commonprefix([prompt, p])) for p in (previous, first) if p),
                 default=0)
    return min(tokens_in, shared // 4)


def forecast_run(
    session: Session,
    settings: Settings,
    *,
    kind: JobKind | str,
    project: str | uuid.UUID,
    n: int | None = None,
    seed: int | None = None,
    document_ids: Sequence[str] | None = None,
    filename_glob: str | None = None,
    mode: str | None = None,
    model: str | None = None,
) -> Forecast:
    """The estimate of the run these options would start (the same options as a run).

    Read-only in intent: a variable without a prompt gets one generated, as the run would;
    the caller rolls the session back.

    Raises:
        ExtractflowError: What starting the run would raise (unknown project, no documents,
            a bad mode).
    """
    kind = JobKind(kind)
    project_row = codebook.get_project(session, project)
    chosen_mode, chosen_model = resolve_options(project_row, settings, mode=mode, model=model)
    notes: list[str] = []
    if kind is JobKind.SAMPLE and not document_ids:
        n = 10 if n is None else n
        if seed is None:
            notes.append("a sample without --seed draws new documents each time: the run's "
                         "documents differ from these, their number does not")
    ids = select_documents(session, project_row, n=n if kind is JobKind.SAMPLE else None,
                           seed=seed, document_ids=document_ids, filename_glob=filename_glob)
    variables, prompt_map = _current(session, project_row)
    instructor_mode = settings.llm_instructor_mode
    price = load_prices(settings).get(chosen_model)
    cache_min = price.cache_min_tokens if price is not None else 0
    usage = observed_usage(session, project_row.id, chosen_model, chosen_mode)

    # Second opinions (off by default) ask a single-call unit again: samples, challenger.
    opinion_per_call = OpinionPolicy.from_settings(settings).calls_per_call
    opinion_calls = 0
    to_do = reused = calls = tokens_in = cached = max_out = unparsed = 0
    previous = first = None
    for rows in _documents(session, ids):
        reusable = reusable_cells(
            session, project_id=project_row.id, content_hashes=[r[3] for r in rows if r[3]],
            prompt_ids={p.id for p in prompt_map.values()}, model=chosen_model)
        for _doc_id, text, size, content_hash in rows:
            todo = [v for v in variables
                    if not (content_hash and (content_hash, prompt_map[v.id].id) in reusable)]
            reused += len(variables) - len(todo)
            if not todo:
                continue
            to_do += 1
            if text is None:  # not parsed yet: its file size stands in for its text
                unparsed += 1
                text = "x" * int(size or 0)
            shapes = document_calls(text, todo, prompt_map, mode=chosen_mode,
                                    instructor_mode=instructor_mode, settings=settings)
            for call in shapes.calls:
                cached += _cached_tokens(call.prompt, previous, first, call.tokens_in,
                                         cache_min)
                previous = call.prompt
                first = first or call.prompt
            calls += len(shapes.calls)
            tokens_in += shapes.tokens_in
            max_out += shapes.max_tokens
            units = 1 if chosen_mode == "per_document" else len(todo)
            if opinion_per_call and len(shapes.calls) == units:  # split documents get none
                opinion_calls += units * opinion_per_call
                tokens_in += shapes.tokens_in * opinion_per_call
                max_out += shapes.max_tokens * opinion_per_call
    calls += opinion_calls
    if opinion_calls:
        notes.append(f"second opinions add {opinion_calls:,} of these calls "
                     f"({opinion_per_call} per call: EXTRACTFLOW_SECOND_OPINION_SAMPLES, "
                     "EXTRACTFLOW_CHALLENGER_MODEL), priced at the run model's price")
    per_call = usage.tokens_out_per_call
    if per_call is not None:
        tokens_out = math.ceil(per_call * calls)
        output_basis = f"observed: {per_call:.0f} per call over {usage.calls:,} earlier calls"
    else:
        tokens_out = max_out
        output_basis = "the prompts' max_tokens (no earlier run to measure): an upper bound"
    if unparsed:
        notes.append(f"{unparsed} documents are not parsed yet: their file size stands in "
                     "for their text")
    concurrency = max(1, min(settings.llm_concurrency, settings.global_concurrency_limit))
    if usage.mean_latency_s is not None:
        seconds, latency_basis = usage.mean_latency_s, "observed in the last run"
    else:
        seconds = settings.estimate_call_seconds
        latency_basis = "assumed: EXTRACTFLOW_ESTIMATE_CALL_SECONDS, no run measured yet"
    return Forecast(
        project=project_row.name, kind=kind.value, model=chosen_model, mode=chosen_mode,
        documents=len(ids), documents_to_do=to_do, cells_reused=reused, calls=calls,
        tokens_in=tokens_in, tokens_out=tokens_out, tokens_cached=cached,
        output_basis=output_basis, token_counter=TOKEN_COUNTER, concurrency=concurrency,
        seconds_per_call=round(seconds, 3), latency_basis=latency_basis,
        wall_seconds=round(calls * seconds / concurrency, 1),
        price=price.to_dict() if price is not None else None,
        cost_sync_usd=_priced(price, tokens_in, tokens_out),
        cost_batch_usd=_priced(price, tokens_in, tokens_out, batch=True),
        cost_cached_usd=_priced(price, tokens_in, tokens_out, cached=cached),
        notes=notes,
    )


def _priced(price: Price | None, tokens_in: int, tokens_out: int, *, cached: int = 0,
            batch: bool = False) -> float | None:
    if price is None:
        return None
    return round(cost(price, tokens_in, tokens_out, tokens_cached=cached, batch=batch), 6)
