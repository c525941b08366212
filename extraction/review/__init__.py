"""Reviewing results: corrections and feedback, the review workbook (layout, export, import),
prompt refinement, truths and the scorecard."""
