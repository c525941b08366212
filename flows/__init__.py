"""Prefect flows: ingest, sample_run, full_run, refine_prompts, export_dataset.

Importing this package does nothing: what a process needs before it runs a flow is done by
:func:`flows.bootstrap.bootstrap`, which the entry points call.
"""
