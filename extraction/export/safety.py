"""Keep exported files harmless and predictable: formula neutralisation, output paths, columns.

A spreadsheet executes a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and some also read a
leading tab or carriage return as the start of one), so a document that says ``=HYPERLINK(…)``
could run in the reviewer's Excel ("CSV injection"). Such text cells get a leading ``'`` in CSV
and XLSX, unless the whole cell is a plain number (``-3.5`` stays ``-3.5``): numbers are never
executed and must stay numbers. The same rule exists twice, as a Python function for cells
written one by one (XLSX) and as a DuckDB macro for files DuckDB writes itself (CSV), built from
the same two patterns so they cannot drift.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

import duckdb

from extraction.errors import ConflictError, ValidationError

__all__ = [
    "FORMULA_TRIGGERS",
    "ColumnNamer",
    "install_sql_macros",
    "neutralise",
    "quote_ident",
    "resolve_output_path",
    "safe_column_name",
    "sql_string",
]

#: First characters that make a spreadsheet read a cell as a formula (OWASP's list).
FORMULA_TRIGGERS = "=+-@\t\r"
_TRIGGER_PATTERN = r"^[=+\-@\t\r]"
_NUMBER_PATTERN = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"
_TRIGGER_RE = re.compile(_TRIGGER_PATTERN)
_NUMBER_RE = re.compile(_NUMBER_PATTERN)


def neutralise(value: str) -> str:
    """``value`` with a leading ``'`` if a spreadsheet would execute it, else unchanged."""
    if value and _TRIGGER_RE.match(value) and not _NUMBER_RE.fullmatch(value):
        return "'" + value
    return value


def install_sql_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Define ``xf_safe(text)`` in DuckDB: :func:`neutralise` as SQL, for COPY … TO csv."""
    con.execute(
        "CREATE OR REPLACE MACRO xf_safe(s) AS CASE "
        f"WHEN regexp_matches(s, {sql_string(_TRIGGER_PATTERN)}) "
        f"AND NOT regexp_matches(s, {sql_string(_NUMBER_PATTERN)}) "
        "THEN '''' || s ELSE s END"
    )


def quote_ident(name: str) -> str:
    """A DuckDB identifier, double-quoted so any column name is safe in SQL."""
    return '"' + name.replace('"', '""') + '"'


def sql_string(value: str) -> str:
    """A DuckDB string literal (for the few places that take no parameters, e.g. COPY … TO)."""
    return "'" + value.replace("'", "''") + "'"


_UNSAFE_CHARS = re.compile(r"[^a-z0-9_]+")
MAX_COLUMN_LENGTH = 63


def safe_column_name(name: str) -> str:
    """A lowercase identifier made of letters, digits and underscores, starting with a letter.

    Variable names are already like this (the codebook enforces it); the guard is for names
    from older databases and for suffixed names such as ``<variable>__confidence``.
    """
    cleaned = _UNSAFE_CHARS.sub("_", name.strip().lower()).strip("_") or "column"
    if not cleaned[0].isalpha():
        cleaned = "v_" + cleaned
    return cleaned[:MAX_COLUMN_LENGTH]


class ColumnNamer:
    """Hands out unique safe column names; fixed columns (``document_id`` …) win any clash.

    A variable ``a__confidence`` and the confidence column of a variable ``a`` would otherwise
    collide; the later one gets ``_2`` (then ``_3`` …) so no column is silently overwritten.
    """

    def __init__(self, fixed: Iterable[str] = ()) -> None:
        self._taken: set[str] = set(fixed)

    def take(self, wanted: str) -> str:
        base = safe_column_name(wanted)
        name, n = base, 1
        while name in self._taken:
            n += 1
            suffix = f"_{n}"
            name = base[: MAX_COLUMN_LENGTH - len(suffix)] + suffix
        self._taken.add(name)
        return name


_KINDS = (
    (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
)


def resolve_output_path(path: str | Path, *, force: bool = False) -> Path:
    """The absolute file to write, or a clear error before any work is done.

    Only a new path or an existing *regular* file (with ``force``) is accepted. The file is
    then written beside it under a temporary name and renamed over it, so a reader never sees
    half a file, and a device, FIFO or socket is never replaced by a regular file. A symbolic
    link is refused rather than followed: writing "through" it would replace a file the user
    did not name (its target), and replacing the link would silently break it.

    Raises:
        ValidationError: ``path`` is a directory, a symbolic link, a device, FIFO or socket,
            or its parent directory does not exist (or is not a directory).
        ConflictError: the file exists and ``force`` is not set.
    """
    given = Path(path).expanduser()
    if not given.name or given.name in (".", ".."):
        given = given.resolve()  # "dir/.." and the like name a directory
    # The directory may be reached through links (it is the user's choice of folder); the
    # final name itself is never followed.
    parent = given.parent.resolve()
    resolved = parent / given.name
    if not parent.is_dir():
        what = "is not a directory" if parent.exists() else "does not exist"
        raise ValidationError(
            f"cannot write {resolved}: the directory {parent} {what}",
            field="output", instance=str(resolved),
        )
    try:
        info = resolved.lstat()
    except FileNotFoundError:
        return resolved
    if stat.S_ISLNK(info.st_mode):
        raise ValidationError(
            f"the output path {resolved} is a symbolic link (to {os.readlink(resolved)}); "
            "give the file it points to, or another name",
            field="output", instance=str(resolved),
        )
    if stat.S_ISDIR(info.st_mode):
        raise ValidationError(
            f"the output path {resolved} is a directory; give a file name, "
            f"e.g. {resolved / 'export.csv'}",
            field="output", instance=str(resolved),
        )
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a regular file")
        raise ValidationError(
            f"the output path {resolved} is {kind}: an export only creates or replaces "
            "regular files (use -o - to write a text format to standard output)",
            field="output", instance=str(resolved),
        )
    if not force:
        raise ConflictError(
            f"{resolved} already exists; use --force (force=True) to overwrite it",
            field="output", instance=str(resolved),
        )
    return resolved
