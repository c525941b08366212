"""Reviewing results: feedback, the review workbook, prompt refinement, the scorecard."""
