"""Reviewers' corrected values: checked against the variable, normalised, compared, shown.

A corrected value is held to the same rules as an extracted one, so that a correction and an
extraction of the same thing compare equal: it is checked and normalised against the variable's
type and categories (``"1,200"`` → ``1200`` for a NUMBER, ``"phase 2"`` → ``"Phase 2"`` for a
CATEGORY, partial ISO dates for a DATE) before anything stores or scores it. The rules are those of
:mod:`extraction.codebook.values`; this module adds what people type that a model does not
(several categories as ``"a; b"``) and refuses what it would have to guess (day/month order).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from extraction.codebook import values
from extraction.errors import ValidationError
from extraction.models import Variable, VariableType

__all__ = [
    "MULTI_SEPARATOR",
    "OTHER",
    "format_value",
    "normalise_value",
    "same_value",
]

_ISO_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
MULTI_SEPARATOR = ";"
OTHER = values.OTHER


def _fail(variable: Variable, raw: Any, why: str) -> ValidationError:
    return ValidationError(
        f"{raw!r} is not a valid value for {variable.type.value} variable "
        f"'{variable.name}': {why}",
        field="corrected_value",
    )


def _choices(variable: Variable) -> str:
    allowed = list(variable.categories or [])
    return ", ".join(repr(c) for c in allowed) + (f", {OTHER!r}" if variable.allow_other else "")


def _hint(variable: Variable) -> str:
    """What a reviewer should type for this variable, for error messages."""
    vtype = variable.type
    if vtype is VariableType.NUMBER:
        unit = f" in {variable.unit}" if variable.unit else ""
        return f"write a plain number{unit}, e.g. 1200 or 12.5"
    if vtype is VariableType.DATE:
        return "use ISO 8601: YYYY, YYYY-MM or YYYY-MM-DD"
    if vtype is VariableType.BOOLEAN:
        return "answer true or false (yes/no)"
    if vtype is VariableType.CATEGORY:
        several = f" (several: separate them with '{MULTI_SEPARATOR}')" \
            if variable.multi_select else ""
        return f"choose one of {_choices(variable)}{several}"
    return "write plain text"


def _date(variable: Variable, raw: Any) -> str | None:
    """A date via :func:`extraction.codebook.values.normalize_date`, refusing what it would guess.

    The extraction side keeps only the year of an ambiguous ``03/04/2021``; a reviewer's
    correction must say what they mean instead, so that case is an error here.
    """
    try:
        value = values.normalize_date(raw)
    except ValueError:
        why = "no such date; " if isinstance(raw, str) and _ISO_PARTIAL.match(raw.strip()) \
            else ""
        raise _fail(variable, raw, why + _hint(variable)) from None
    if value is not None and len(value) == 4 and isinstance(raw, str) \
            and len(re.findall(r"\d+", raw)) > 1:
        raise _fail(variable, raw, "day and month are ambiguous; " + _hint(variable))
    return value


def _split_multi(raw: Any) -> list[Any]:
    if isinstance(raw, (list, tuple, set)):
        return list(raw)
    text = str(raw).strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list):
            return parsed
    return [part for part in text.split(MULTI_SEPARATOR) if part.strip()]


def normalise_value(variable: Variable, raw: Any) -> Any:
    """Check ``raw`` against the variable's type and categories and return its canonical form.

    The rules are those of :mod:`extraction.codebook.values` (the ones extracted values follow),
    so a correction and an extraction of the same thing compare equal — with two differences for
    people: an ambiguous day/month order is an error instead of a bare year, and several
    categories may be typed as ``"a; b"`` or a JSON list. Blank text and placeholders such as
    ``N/A`` or ``not stated`` stand for "not stated in the document" (``None``).

    Args:
        variable: the codebook variable the value belongs to.
        raw: what a reviewer typed (CLI text, a workbook cell) or a JSON value.

    Returns:
        The value as it is stored: ``str`` for TEXT and DATE (ISO 8601, partial allowed),
        the category's own spelling for CATEGORY (a list for multi-select, in codebook
        order), ``float`` for NUMBER, ``bool`` for BOOLEAN; ``None`` for "not stated".

    Raises:
        ValidationError: the value does not fit the type or is not one of the categories
            (``field`` is ``corrected_value``; the message names the variable and the rule).
    """
    if values.is_absent(raw):
        return None
    vtype = variable.type
    if vtype is VariableType.DATE:
        return _date(variable, raw)
    try:
        if vtype is VariableType.CATEGORY and variable.multi_select:
            chosen = values.normalize_categories(
                _split_multi(raw), list(variable.categories or []),
                allow_other=variable.allow_other)
            if not chosen:
                return None
            order = list(variable.categories or []) + [OTHER]
            return sorted(set(chosen), key=order.index)
        return values.normalize_value(variable, raw)
    except ValueError:
        raise _fail(variable, raw, _hint(variable)) from None


def _comparable(variable: Variable, value: Any) -> Any:
    if value is None:
        return None
    try:
        value = normalise_value(variable, value)
    except ValidationError:
        return ("raw", json.dumps(value, sort_keys=True, default=str))
    if value is None:
        return None
    if variable.type is VariableType.TEXT:
        return " ".join(str(value).split()).casefold()
    if variable.type is VariableType.CATEGORY:
        return frozenset(value) if isinstance(value, list) else value
    return value


def same_value(variable: Variable, left: Any, right: Any) -> bool:
    """Whether two values of ``variable`` say the same thing.

    Values are normalised first, then TEXT is compared ignoring case and runs of whitespace,
    multi-select categories as sets, and numbers with a relative tolerance of 1e-9. Two nulls
    ("not stated") are the same; null and a value are not.
    """
    a, b = _comparable(variable, left), _comparable(variable, right)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) \
            and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def format_value(value: Any) -> str:
    """A value as one line of text for tables and workbooks (null → empty string)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return f"{MULTI_SEPARATOR} ".join(format_value(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)
