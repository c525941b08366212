"""`python -m extraction` runs the CLI (the same as the `extractflow` command)."""

from extraction.cli import main

main()
