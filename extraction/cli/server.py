"""`extractflow server …`: a local Prefect server with its UI, for one machine.

While it runs, `extractflow run …` and `docs add` use it (no PREFECT_API_URL needed): every
run shows in its UI and the CLI prints the run's link. See `flows/local_server.py`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from extraction.cli._common import JsonOption, console, emit_json, new_app

app = new_app("Local Prefect server with the UI (127.0.0.1, SQLite under EXTRACTFLOW_HOME).")


@app.command("start")
def start(
    port: Annotated[int | None, typer.Option(
        "--port", min=1, max=65535, help="Port (default EXTRACTFLOW_SERVER_PORT, 4200).")]
    = None,
    json_out: JsonOption = False,
) -> None:
    """Start the server in the background (or say where it already runs)."""
    from flows import local_server

    info, started = local_server.start(port=port)
    if json_out:
        emit_json({**local_server.status(), "started": started})
        return
    verb = "Started" if started else "Already running:"
    host = (f"the run host (pid {info.host_pid}) runs `extractflow run` jobs warm"
            if info.host_pid else f"the run host did not start (see {info.host_log}): runs "
            "start in their own command")
    console.print(f"{verb} Prefect server (pid {info.pid}); UI {info.ui_url} · API "
                  f"{info.api_url}; {host}.\nextractflow commands now use it; stop it with "
                  "`extractflow server stop`.", markup=False)


@app.command("stop")
def stop(json_out: JsonOption = False) -> None:
    """Stop the local server and its run host, which cancels the jobs it runs keeping their
    work (the server's runs and logs are kept for the next start)."""
    from flows import local_server

    info = local_server.stop()
    if json_out:
        emit_json({"stopped": info is not None, "pid": info.pid if info else None})
        return
    console.print(f"Stopped the Prefect server (pid {info.pid})." if info
                  else "No local Prefect server was running.")


@app.command("status")
def status(json_out: JsonOption = False) -> None:
    """Whether the local server runs, its UI and API URLs (exit code 1 when it does not)."""
    from flows import local_server

    data = local_server.status()
    if json_out:
        emit_json(data)
    elif data["running"]:
        console.print(f"Running (pid {data['pid']}): UI {data['ui_url']} · API "
                      f"{data['api_url']} · run host "
                      + (f"pid {data['host_pid']}" if data["run_host"] else "not running")
                      + ("" if data["in_use"] else
                         " — not used: PREFECT_API_URL points elsewhere"), markup=False)
    else:
        console.print("Not running; start it with `extractflow server start`.")
    if not data["running"]:
        raise typer.Exit(1)  # scripts can test for a running server
