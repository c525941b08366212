"""A run of the pipeline: plan, extraction engine, chunking, grounding, confidence, runner, summary, job lifecycle."""
