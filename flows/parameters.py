"""The typed parameters of the run flows, and how a flow's arguments become a run.

Prefect builds the run form of a deployment from the flow's signature: a ``Literal`` is a
dropdown, pydantic ``Field`` bounds are checked by the form and by Prefect before the run
starts, and each parameter's description is the line of the flow's docstring ``Args``
(Prefect takes descriptions from the docstring, not from ``Field``). The types below are
shared by ``sample-run`` and ``full-run`` so both forms offer the same choices.

:func:`split_arguments` sorts a flow's arguments into what plans the job, the resume
parameters and the tuning knobs; adding a knob is one line in :data:`KNOBS` beside its
parameter in the signature.

``job_id`` and ``force`` are the resume path (``extractflow run resume``, and Prefect's
Retry, which re-runs the flow run with the parameters it recorded): they come last in the
form and their descriptions say they are advanced.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field

__all__ = [
    "KNOBS",
    "ChunkSize",
    "Concurrency",
    "InFlight",
    "JobRef",
    "MaxCost",
    "Mode",
    "ModelName",
    "ProjectRef",
    "SampleSize",
    "ShardSize",
    "Shards",
    "Seed",
    "StopAfter",
    "split_arguments",
]

#: ``default``: the project's setting, else EXTRACTFLOW_EXTRACTION_MODE.
Mode = Literal["default", "per_document", "per_variable"]
ProjectRef = Annotated[str, Field(min_length=1, max_length=200)]
SampleSize = Annotated[int, Field(ge=1, le=100_000)]
Seed = Annotated[int | None, Field(ge=0, le=2**63 - 1)]
ModelName = Annotated[str | None, Field(max_length=200)]
JobRef = Annotated[str | None, Field(min_length=6, max_length=36)]
Concurrency = Annotated[int | None, Field(ge=1, le=1024)]
ChunkSize = Annotated[int | None, Field(ge=1, le=10_000)]
InFlight = Annotated[int | None, Field(ge=1, le=256)]
StopAfter = Annotated[int | None, Field(ge=0, le=100_000)]
MaxCost = Annotated[float | None, Field(gt=0, le=1_000_000)]
Shards = Annotated[int | None, Field(ge=1, le=10_000)]
ShardSize = Annotated[int | None, Field(ge=1, le=10_000_000)]

#: Flow parameter → its name in :meth:`extraction.run.assembly.RunOptions.resolve`.
KNOBS: dict[str, str] = {
    "llm_concurrency": "llm_concurrency",
    "documents_per_chunk": "documents_per_chunk",
    "chunks_in_flight": "chunks_in_flight",
    "stop_after_unreachable_documents": "stop_after_unreachable",
    "max_cost_usd": "max_cost_usd",
}
#: Flow parameter → its name in :func:`extraction.run.plan.create_run_job`, where they differ.
_PLAN_NAMES = {"document_filter": "filename_glob"}
#: Passed to :func:`flows._run.run_job` as they are: the resume path, sharding, batch mode.
_RESUME = ("job_id", "force", "shards", "shard_size", "batch")


def split_arguments(arguments: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any],
                                                            dict[str, Any]]:
    """A run flow's arguments as ``(plan parameters, run_job's own arguments, knobs)``;
    run_job's own are the resume path (``job_id``, ``force``), the sharding and ``batch``.

    ``mode="default"`` becomes ``None`` (the project's setting, then the global one).
    """
    plan: dict[str, Any] = {}
    resume: dict[str, Any] = {}
    knobs: dict[str, Any] = {}
    for name, value in arguments.items():
        if name in KNOBS:
            knobs[KNOBS[name]] = value
        elif name in _RESUME:
            resume[name] = value
        else:
            plan[_PLAN_NAMES.get(name, name)] = None if name == "mode" and value == "default" \
                else value
    return plan, resume, knobs
