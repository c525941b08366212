"""Validated input shapes for the codebook: what a user may say about projects and variables.

These pydantic models are the single place where the codebook's rules live (safe identifiers,
category lists, type-specific fields), so the CLI, the YAML codebook file and the Python API
reject the same inputs with the same messages.
"""

from __future__ import annotations

import keyword
import re
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from extraction.errors import ValidationError
from extraction.models import VariableType

__all__ = [
    "ProjectSpec",
    "ProjectUpdate",
    "VariableSpec",
    "VariableUpdate",
    "RESERVED_VARIABLE_NAMES",
    "check_aliases_fit",
    "validation_error",
    "parse_spec",
]

VARIABLE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

# Column names that exports put beside the variables; a variable may not shadow them.
RESERVED_VARIABLE_NAMES = frozenset(
    {
        "document_id", "filename", "source_path", "job_id", "project_id", "variable",
        "variable_id", "value", "status", "confidence", "evidence", "evidence_quote",
        "evidence_page", "page", "prompt_version", "model", "extraction_id", "id", "type",
        "created_at", "updated_at", "flagged", "text", "document_text",
    }
)


def _check_variable_name(name: str) -> str:
    name = name.strip()
    if not VARIABLE_NAME_RE.match(name):
        raise ValueError(
            f"'{name}' is not a safe variable name: use lowercase letters, digits and "
            "underscores, starting with a letter (at most 63 characters), e.g. 'trial_phase'"
        )
    if name in RESERVED_VARIABLE_NAMES or keyword.iskeyword(name):
        raise ValueError(f"'{name}' is reserved (exports use it as a column); choose another name")
    return name


def _check_categories(categories: list[Any] | None) -> list[str] | None:
    if categories is None:
        return None
    cleaned = [str(c).strip() for c in categories]
    if any(not c for c in cleaned):
        raise ValueError("categories must not be empty strings")
    seen: set[str] = set()
    for c in cleaned:
        if c.casefold() in seen:
            raise ValueError(f"category '{c}' is listed twice")
        seen.add(c.casefold())
    return cleaned


def _check_aliases(aliases: Any) -> dict[str, list[str]] | None:
    """Aliases as ``{label: [alias, …]}``: strings, none empty, none listed twice."""
    if aliases is None or aliases == {}:
        return None
    if not isinstance(aliases, dict):
        raise ValueError("category_aliases must map a category to a list of aliases, e.g. "
                         "{Industry: [pharmaceutical company]}")
    cleaned: dict[str, list[str]] = {}
    for label, words in aliases.items():
        words = [words] if isinstance(words, str) else list(words or [])
        items = [str(w).strip() for w in words]
        if any(not w for w in items):
            raise ValueError(f"an alias of category '{label}' is an empty string")
        cleaned[str(label).strip()] = list(dict.fromkeys(items))
    return cleaned


def _inline_aliases(data: Any) -> Any:
    """The per-category form ``categories: [{label: Industry, aliases: [...]}, Other]``, as
    a plain category list plus ``category_aliases`` (the form the codebook stores)."""
    if not isinstance(data, dict) or not isinstance(data.get("categories"), list):
        return data
    if not any(isinstance(c, dict) for c in data["categories"]):
        return data
    labels: list[Any] = []
    aliases: dict[str, Any] = dict(data.get("category_aliases") or {})
    for item in data["categories"]:
        if not isinstance(item, dict):
            labels.append(item)
            continue
        unknown = set(item) - {"label", "aliases"}
        if "label" not in item or unknown:
            raise ValueError("a category written as a mapping takes 'label' and 'aliases', "
                             "e.g. {label: Industry, aliases: [pharmaceutical company]}")
        labels.append(item["label"])
        if item.get("aliases"):
            aliases[str(item["label"]).strip()] = item["aliases"]
    return {**data, "categories": labels, "category_aliases": aliases or None}


def check_aliases_fit(categories: list[str] | None,
                      aliases: dict[str, list[str]] | None) -> None:
    """Every alias belongs to a listed category and names only it.

    Raises:
        ValidationError: an alias for a category that is not listed, or one word that would
            name two categories (as a label of one and an alias of another, or twice).
    """
    if not aliases:
        return
    labels = {c.casefold(): c for c in categories or []}
    owner: dict[str, str] = {k: v for k, v in labels.items()}
    for label, words in aliases.items():
        if label.casefold() not in labels:
            raise ValidationError(
                f"category_aliases names '{label}', which is not one of the categories "
                f"({', '.join(categories or []) or 'none'})", field="category_aliases")
        for word in words:
            key = word.casefold()
            if key in owner and owner[key] != labels[label.casefold()]:
                raise ValidationError(
                    f"alias '{word}' of '{label}' would also name '{owner[key]}'; an alias "
                    "must name one category only", field="category_aliases")
            owner[key] = labels[label.casefold()]


class ProjectSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    domain_context: str = ""
    settings: dict[str, Any] = Field(default_factory=dict)


class ProjectUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = None
    domain_context: str | None = None
    settings: dict[str, Any] | None = None


class _VariableRules(BaseModel):
    """Checks shared by a new variable and the merged result of an update."""

    @staticmethod
    def check_type_fields(
        vtype: VariableType, categories: list[str] | None, allow_other: bool, multi_select: bool
    ) -> None:
        # Raised as our own error (not ValueError) so the offending field is named.
        if vtype is VariableType.CATEGORY:
            if not categories:
                raise ValidationError(
                    "a CATEGORY variable needs a non-empty list of categories",
                    field="categories",
                )
        else:
            if categories:
                raise ValidationError(
                    f"categories are only for CATEGORY variables, not {vtype.value}",
                    field="categories",
                )
            if allow_other or multi_select:
                raise ValidationError(
                    "allow_other and multi_select are only for CATEGORY variables, "
                    f"not {vtype.value}",
                    field="allow_other" if allow_other else "multi_select",
                )


class VariableSpec(_VariableRules):
    """A variable as a user defines it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str
    label: str = ""
    type: VariableType
    instructions: str = ""
    categories: list[str] | None = None
    #: Other words per category that name it (label → aliases), e.g. a sponsor's kind.
    category_aliases: dict[str, list[str]] | None = None
    allow_other: bool = False
    multi_select: bool = False
    unit: str | None = Field(default=None, max_length=50)
    format_hint: str | None = Field(default=None, max_length=200)
    required: bool = False
    position: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _inline(cls, data: Any) -> Any:
        return _inline_aliases(data)

    @field_validator("type", mode="before")
    @classmethod
    def _upper_type(cls, value: Any) -> Any:
        if isinstance(value, str):
            upper = value.strip().upper()
            if upper not in VariableType.__members__:
                raise ValueError(
                    f"unknown type '{value}': choose one of "
                    + ", ".join(VariableType.__members__)
                )
            return upper
        return value

    _name = field_validator("name")(classmethod(lambda cls, v: _check_variable_name(v)))
    _categories = field_validator("categories")(
        classmethod(lambda cls, v: _check_categories(v))
    )
    _aliases = field_validator("category_aliases", mode="before")(
        classmethod(lambda cls, v: _check_aliases(v))
    )

    @model_validator(mode="after")
    def _type_rules(self) -> VariableSpec:
        self.check_type_fields(self.type, self.categories, self.allow_other, self.multi_select)
        if self.category_aliases and self.type is not VariableType.CATEGORY:
            raise ValidationError(f"category_aliases are only for CATEGORY variables, not "
                                  f"{self.type.value}", field="category_aliases")
        check_aliases_fit(self.categories, self.category_aliases)
        if not self.label:
            self.label = self.name.replace("_", " ").capitalize()
        return self


class VariableUpdate(BaseModel):
    """Fields to change on a variable; unset fields stay as they are."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str | None = None
    label: str | None = None
    type: VariableType | None = None
    instructions: str | None = None
    categories: list[str] | None = None
    category_aliases: dict[str, list[str]] | None = None
    allow_other: bool | None = None
    multi_select: bool | None = None
    unit: str | None = None
    format_hint: str | None = None
    required: bool | None = None
    position: int | None = None

    _upper_type = field_validator("type", mode="before")(VariableSpec._upper_type.__func__)  # type: ignore[attr-defined]
    _name = field_validator("name")(
        classmethod(lambda cls, v: None if v is None else _check_variable_name(v))
    )
    _categories = field_validator("categories")(
        classmethod(lambda cls, v: _check_categories(v))
    )
    _aliases = field_validator("category_aliases", mode="before")(
        classmethod(lambda cls, v: _check_aliases(v))
    )


def validation_error(exc: pydantic.ValidationError, *, prefix: str = "") -> ValidationError:
    """Turn pydantic's report into our error, naming the first offending field plainly."""
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ()) if p != "__root__")
    field = ".".join(p for p in (prefix, loc) if p) or None
    message = str(first.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        message = f"unknown field '{loc.split('.')[-1]}'"
    elif first.get("type") == "missing":
        message = f"'{loc.split('.')[-1]}' is required"
    more = len(exc.errors()) - 1
    detail = message + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")
    problems = [
        {"field": ".".join(p for p in (prefix, ".".join(str(x) for x in e["loc"])) if p),
         "message": str(e["msg"]).removeprefix("Value error, ")}
        for e in exc.errors()
    ]
    return ValidationError(detail, field=field, extra={"errors": problems})


def parse_spec(model: type[BaseModel], data: dict[str, Any], *, prefix: str = "") -> Any:
    """Validate ``data`` as ``model`` and raise our ValidationError on failure."""
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise validation_error(exc, prefix=prefix) from exc
    except ValidationError as exc:
        if prefix:
            exc.field = ".".join(p for p in (prefix, exc.field) if p)
        raise
