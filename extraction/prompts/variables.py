"""What prompt rendering needs of a variable: an ORM row and a ``VariableInfo`` both fit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from extraction.models import VariableType

__all__ = ["OTHER_CATEGORY", "VariableLike", "display_name"]

#: The answer a CATEGORY variable with ``allow_other`` gives for a stated value that fits none.
OTHER_CATEGORY = "other"


class VariableLike(Protocol):
    """What rendering needs of a variable: an ORM row and a ``VariableInfo`` both fit."""

    name: str
    label: str
    type: VariableType
    instructions: str
    categories: Sequence[str] | None
    allow_other: bool
    multi_select: bool
    unit: str | None
    format_hint: str | None
    required: bool


def display_name(variable: VariableLike) -> str:
    """The label, else the name with spaces: how a block names its variable to the model."""
    return (variable.label or "").strip() or variable.name.replace("_", " ")
