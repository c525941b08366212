"""Turn a stored JSON value into the text and the typed forms every export format needs.

Each extraction's ``value`` is JSON as the engine validated it against the variable's type
(a number, ``true``/``false``, an ISO date string, a category or a list of categories). One
value becomes one :class:`TypedValue`: ``text`` for CSV (nothing lost, whatever the value) and
at most one typed slot for typed formats (XLSX cells, JSON, Parquet). A value that does not fit
its type (``"about 40"`` in a NUMBER variable, a partial date ``"2021-03"``) keeps only its
text, so a typed column falls back to text rather than dropping it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from extraction.models import VariableType

__all__ = ["LIST_SEPARATOR", "TypedValue", "format_number", "type_value"]

#: How a multi-select category value is joined into one CSV/XLSX cell.
LIST_SEPARATOR = "; "
_FULL_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}


@dataclass(frozen=True, slots=True)
class TypedValue:
    text: str | None = None
    number: float | None = None
    boolean: bool | None = None
    date: date | None = None
    items: list[str] | None = None


_EMPTY = TypedValue()


def format_number(value: float) -> str:
    """``42`` for 42.0, ``3.5`` for 3.5: how a number reads in a text cell."""
    if isinstance(value, int):
        return str(value)
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _text(raw: Any) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, (int, float)):
        return format_number(raw)
    if isinstance(raw, list):
        return LIST_SEPARATOR.join(_text(item) for item in raw)
    if isinstance(raw, dict):
        return json.dumps(raw, ensure_ascii=False, sort_keys=True)
    return str(raw)


def _number(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, (int, float)):
        return float(raw) if math.isfinite(raw) else None
    if isinstance(raw, str):
        try:
            number = float(raw.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _boolean(raw: Any) -> bool | None:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    return None


def _date(raw: Any) -> date | None:
    if isinstance(raw, str) and _FULL_DATE.match(raw.strip()):
        try:
            return date.fromisoformat(raw.strip())
        except ValueError:
            return None
    return None


def type_value(vtype: VariableType, multi_select: bool, raw: Any) -> TypedValue:
    """The text and typed forms of one stored value of a variable of type ``vtype``."""
    if raw is None or raw == [] or raw == "":
        return _EMPTY
    text = _text(raw)
    if vtype is VariableType.NUMBER:
        return TypedValue(text=text, number=_number(raw))
    if vtype is VariableType.BOOLEAN:
        return TypedValue(text=text, boolean=_boolean(raw))
    if vtype is VariableType.DATE:
        return TypedValue(text=text, date=_date(raw))
    if vtype is VariableType.CATEGORY and multi_select:
        items = [_text(item) for item in raw] if isinstance(raw, list) else [text]
        return TypedValue(text=text, items=items)
    return TypedValue(text=text)
