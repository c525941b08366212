"""Prefect flows: ingest, sample_run, full_run, refine_prompts, export_dataset.

Prefect waits 20 s for its temporary (ephemeral) API server to start; on a busy 2-core
machine a first start was measured taking longer, which failed the run before it began. Runs
started from Python (notebooks, benchmarks, tests) get the same 90 s default as the CLI; a
value the user set wins.
"""

import os

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
