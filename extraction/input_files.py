"""Bounded reads of the files a user hands to the CLI (codebooks, prompt files, workbooks).

Every such file is read with a size limit (``settings.max_input_file_bytes``): a wrong path
such as ``/dev/zero`` or a multi-gigabyte log would otherwise be read until the process runs
out of memory. The limit is checked while reading (a device or pipe has no size to look at
first), and the error says which file, how big it may be, and which setting raises it.
"""

from __future__ import annotations

from pathlib import Path

from extraction.errors import NotFoundError, ValidationError

__all__ = ["check_workbook", "read_bytes_limited", "read_text_limited"]


def read_bytes_limited(path: str | Path, *, limit: int, what: str, field: str | None = None
                       ) -> bytes:
    """The bytes of ``path``, or a clear error when there are more than ``limit``."""
    name = str(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise NotFoundError(f"{what} not found: {name}", field=field, instance=name) from None
    except IsADirectoryError:
        raise ValidationError(f"{what} {name} is a directory, not a file", field=field,
                              instance=name) from None
    except OSError as exc:
        raise ValidationError(f"cannot read {what} {name}: {exc.strerror or exc}", field=field,
                              instance=name) from None
    if len(data) > limit:
        raise ValidationError(
            f"{what} {name} is larger than {limit:,} bytes (or never ends, like a device); "
            "give the right file, or raise EXTRACTFLOW_MAX_INPUT_FILE_BYTES",
            field=field, instance=name)
    return data


def read_text_limited(path: str | Path, *, limit: int, what: str, field: str | None = None
                      ) -> str:
    """The UTF-8 text of ``path`` (see :func:`read_bytes_limited`)."""
    data = read_bytes_limited(path, limit=limit, what=what, field=field)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{what} {path} is not UTF-8 text ({exc.reason} at byte "
                              f"{exc.start})", field=field, instance=str(path)) from None


def check_workbook(path: str | Path, *, limit: int, what: str = "workbook") -> None:
    """Refuse a workbook that is not a regular file, is over ``limit`` bytes, or unpacks to
    more than 20 × ``limit`` (an .xlsx is a zip archive: a small file can unpack to a huge
    sheet)."""
    import stat
    import zipfile

    name = str(path)
    try:
        info = Path(path).stat()
    except FileNotFoundError:
        raise ValidationError(f"no {what} at {name}", field="path", instance=name) from None
    except OSError as exc:
        raise ValidationError(f"cannot read {what} {name}: {exc.strerror or exc}",
                              field="path", instance=name) from None
    if not stat.S_ISREG(info.st_mode):
        raise ValidationError(f"{what} {name} is not a regular file", field="path",
                              instance=name)
    if info.st_size > limit:
        raise ValidationError(
            f"{what} {name} is {info.st_size:,} bytes, more than {limit:,}; raise "
            "EXTRACTFLOW_MAX_INPUT_FILE_BYTES if it really is that large",
            field="path", instance=name)
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError):
        return  # not a zip: the workbook reader says what is wrong with it
    if unpacked > 20 * limit:
        raise ValidationError(
            f"{what} {name} unpacks to {unpacked:,} bytes, more than {20 * limit:,}; it is "
            "not a workbook written by `review export`", field="path", instance=name)
