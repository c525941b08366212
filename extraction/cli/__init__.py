"""The `extractflow` command: a root that only mounts one sub-app per command group."""

from __future__ import annotations

import typer

from config.logging import configure_logging, quiet_prefect_environment
from extraction.cli import codebook, db, project, variable
from extraction.cli import prompt
from extraction.cli import feedback, refine, review, scorecard
from extraction.cli import job, run
from extraction.cli import llm
from extraction.cli import export
from extraction.cli import docs
from extraction.cli._common import ProblemGroup

__all__ = ["app", "main"]

app = typer.Typer(
    name="extractflow",
    help="Turn a pile of documents into a typed, grounded dataset with LLMs.",
    cls=ProblemGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logs.")) -> None:
    configure_logging(verbose)


app.add_typer(project.app, name="project")
app.add_typer(variable.app, name="variable")
app.add_typer(codebook.app, name="codebook")
app.add_typer(db.app, name="db")
app.add_typer(prompt.app, name="prompt")
app.add_typer(feedback.app, name="feedback")
app.add_typer(review.app, name="review")
app.command("scorecard")(scorecard.scorecard)
prompt.app.command("refine")(refine.refine)
app.add_typer(run.app, name="run")
app.add_typer(job.app, name="job")
app.add_typer(llm.app, name="llm")
app.command("export")(export.export_command)
app.add_typer(docs.app, name="docs")


def main() -> None:
    """Console-script entry point."""
    quiet_prefect_environment()
    app()
