"""Prepare a process for running extractflow's flows — done by the entry points, not on import.

:func:`bootstrap` does three things, once per process:

* **The local server.** When ``extractflow server start`` runs one and no
  ``PREFECT_API_URL`` is set, flows use it (:mod:`flows.local_server`).

* **Prefect's start-up timeout.** Prefect waits 20 s for its temporary (ephemeral) API
  server to start; on a busy 2-core machine a first start can take longer, which fails the
  run before it begins. Flows started here get 90 s instead; a value the user set
  (``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``) wins. Prefect reads its settings
  when it is imported, so when it already is, its settings are re-read. (This module does not
  import Prefect, so an entry point that calls it first needs no re-read.)
* **The LLM stack, in the background** (``llm_stack=True``, for the runs that extract): see
  :mod:`extraction.run.preload`.

Who calls it: the CLI's ``run`` and ``docs add`` commands and :func:`flows.launch.run_local`
before they start a flow, and every flow of this package when it is called from Python
(``asyncio.run(full_run(...))`` in a notebook, a benchmark, a test) — they are
:class:`flows.entry.EntryFlow` objects, which bootstrap before Prefect starts the run. A
deployment's flow run enters the flow function without calling the flow; the run flows
start the background import there themselves (a deployment talks to a Prefect server, so
the timeout does not apply).
"""

from __future__ import annotations

import os
import sys

from extraction.run import preload

__all__ = ["EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "bootstrap"]

#: Seconds Prefect waits for its temporary API server when the user set nothing else.
EPHEMERAL_STARTUP_TIMEOUT_SECONDS = 90
_TIMEOUT_VARIABLE = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"


def bootstrap(*, llm_stack: bool = False) -> None:
    """Use the local server of ``extractflow server start`` if it runs, raise Prefect's
    ephemeral start-up timeout; with ``llm_stack``, start importing the LLM stack in the
    background. Cheap and idempotent: call it before starting any flow."""
    from flows import local_server

    local_server.connect()
    _default_startup_timeout()
    if llm_stack:
        preload.start()


def _default_startup_timeout() -> None:
    if _TIMEOUT_VARIABLE in os.environ:
        return
    os.environ[_TIMEOUT_VARIABLE] = str(EPHEMERAL_STARTUP_TIMEOUT_SECONDS)
    context = sys.modules.get("prefect.context")
    if context is not None:  # Prefect read its settings at import: make it read them again
        context.refresh_global_settings_context()
