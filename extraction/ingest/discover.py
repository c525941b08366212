"""Find the files an ingest should read: files, folders (recursively) and glob patterns.

Rules, chosen so that running the same command twice sees the same files in the same order:

* A file given by name is taken as it is, even a hidden one or one with an unsupported
  extension (the parser then records why it cannot be used) — the user asked for it.
* A folder is walked recursively. Hidden entries (names starting with ``.``, such as
  ``.git`` or ``.DS_Store``) are skipped; every other file is taken, supported or not, so a
  stray ``.xlsx`` shows up as a failed document with a reason instead of vanishing silently.
  Symbolic links to files are followed; links to folders are not (no cycles).
* A pattern with ``*``, ``?`` or ``[`` is a glob (``**`` crosses folders); like a shell, it
  does not match hidden names. A folder it matches is walked as above.
* Each input's files are sorted by path; inputs keep the order given; a file reached twice
  is kept once (first place wins).
* An input that does not exist, or a pattern or folder that yields no file, is an error
  naming every such input, raised before anything is read: a typo must not look like an
  ingest of nothing.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from extraction.errors import NotFoundError, ValidationError

__all__ = ["discover_files", "is_glob"]

_GLOB_CHARS: Final = frozenset("*?[")


def is_glob(pattern: str) -> bool:
    """True when ``pattern`` contains a glob wildcard (``*``, ``?`` or ``[``)."""
    return any(char in _GLOB_CHARS for char in pattern)


def discover_files(paths: Sequence[str | Path]) -> list[str]:
    """Expand files, folders and globs into a stable, duplicate-free list of file paths.

    Args:
        paths: What the user named: files, folders or glob patterns (``~`` is expanded;
            relative paths are taken from the current directory).

    Returns:
        Absolute file paths, in the order described in the module docstring.

    Raises:
        ValidationError: If ``paths`` is empty.
        NotFoundError: If any input does not exist or yields no file; the message names
            all of them.
    """
    if not paths:
        raise ValidationError("give at least one file, folder or glob pattern", field="paths")
    found: dict[str, None] = {}
    missing: list[str] = []
    for raw in paths:
        files, problem = _expand(str(raw))
        if problem is None and not files:
            problem = f"{raw} (a folder without files)"
        if problem is not None:
            missing.append(problem)
        for file in files:
            found.setdefault(file, None)
    if missing:
        raise NotFoundError(
            "nothing to ingest from: " + "; ".join(missing),
            field="paths", instance=missing[0],
        )
    return list(found)


def _expand(raw: str) -> tuple[list[str], str | None]:
    """The files of one input, or why there are none."""
    text = os.path.expanduser(raw.strip())
    if not text:
        return [], "'' (an empty path)"
    if is_glob(text) and not os.path.lexists(text):
        matches = sorted(glob.glob(text, recursive=True))
        if not matches:
            return [], f"{raw} (no file matches this pattern)"
        files: list[str] = []
        for match in matches:
            files.extend(_files_of(match))
        return files, None
    if not os.path.lexists(text):
        return [], f"{raw} (no such file or folder)"
    return _files_of(text), None


def _files_of(path: str) -> list[str]:
    absolute = os.path.abspath(path)
    if os.path.isdir(absolute):
        return _walk(absolute)
    # A regular file, a broken link or something unreadable: the parser says which.
    return [absolute]


def _walk(folder: str) -> list[str]:
    """Every non-hidden file under ``folder``, sorted by path, without following dir links."""
    collected: list[str] = []
    for root, dirs, files in os.walk(folder, followlinks=False, onerror=None):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        collected.extend(os.path.join(root, name) for name in files if not name.startswith("."))
    return sorted(collected)

