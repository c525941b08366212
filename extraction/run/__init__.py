"""A run of the pipeline: plan, extraction engine, chunking, grounding, confidence, runner, summary;
jobs (lifecycle), progress (counters and event log), views (results and JSON views)."""
