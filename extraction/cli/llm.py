"""`extractflow llm …`: check the configured LLM endpoint before spending a run on it."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from config.settings import get_settings
from extraction.cli._common import JsonOption, console, emit_json, new_app, table
from extraction.errors import LLMError
from extraction.llm import INSTRUCTOR_MODES
from extraction.llm_check import CheckReport, check_endpoint

app = new_app("The LLM endpoint: check connectivity and structured output.")

AllModesOpt = Annotated[bool, typer.Option(
    "--all-modes", help="Try every instructor mode (tools, json_schema, json, md_json).")]
BaseUrlOpt = Annotated[str | None, typer.Option(
    "--base-url", help="Check this endpoint instead of EXTRACTFLOW_LLM_BASE_URL.")]
ModelOpt = Annotated[str | None, typer.Option(
    "--model", help="Check this model instead of EXTRACTFLOW_LLM_MODEL.")]
ModeOpt = Annotated[str | None, typer.Option(
    "--mode", help="Instructor mode to check instead of EXTRACTFLOW_LLM_INSTRUCTOR_MODE.")]


def _print(report: CheckReport) -> None:
    console.print(f"endpoint  {report.base_url}", markup=False)
    console.print(f"model     {report.model}", markup=False)
    if report.models is not None:
        listed = "listed" if report.model in report.models else "NOT listed"
        console.print(f"models    {len(report.models)} on the server; {report.model} is {listed}",
                      markup=False)
    elif report.models_problem:
        console.print(f"models    not listed: {report.models_problem}", markup=False)
    if len(report.checks) > 1:
        t = table("mode", "result", "latency", "value", "problem")
        for check in report.checks:
            t.add_row(check.mode, "ok" if check.ok else "FAILED",
                      f"{check.latency_ms:.0f} ms" if check.latency_ms is not None else "",
                      "" if check.value is None else str(check.value), check.problem or "")
        console.print(t)
    if report.ok:
        check = report.checks[0]
        console.print(f"[green]OK[/]: structured output round trip in mode {check.mode} took "
                      f"{check.latency_ms:.0f} ms and returned value {check.value!r}")
        if check.hint:
            console.print(f"note: {check.hint}", markup=False)


@app.command("check")
def check(
    all_modes: AllModesOpt = False,
    base_url: BaseUrlOpt = None,
    model: ModelOpt = None,
    mode: ModeOpt = None,
    json_out: JsonOption = False,
) -> None:
    """Check connectivity and a structured-output round trip; explain what fails."""
    if mode is not None and mode not in INSTRUCTOR_MODES:
        raise typer.BadParameter(f"use one of {', '.join(INSTRUCTOR_MODES)}", param_hint="--mode")
    report = asyncio.run(check_endpoint(get_settings(), all_modes=all_modes, base_url=base_url,
                                        model=model, mode=mode))
    if report.ok:
        if json_out:
            emit_json(report.to_dict())
        else:
            _print(report)
        return
    if not json_out:
        _print(report)
    details = report.to_dict()
    raise LLMError(
        f"{report.problem}" + (f" — {report.hint}" if report.hint else ""),
        instance=report.base_url,
        extra={k: details[k] for k in ("step", "hint", "base_url", "model", "mode", "models",
                                        "checks", "working_modes")},
    )
