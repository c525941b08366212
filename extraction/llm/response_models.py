"""Pydantic response models built from the codebook: what the LLM must answer, typed per variable.

Each variable's answer is one small object, the same four keys for every type (short on purpose,
small local models must cope)::

    {"status": "found" | "not_found", "evidence": str | null, "value": <typed> | null,
     "confidence": 0..1}

The keys come in that order because models write left to right: first commit to whether the
document states it at all (which discourages invented values), then copy the quote, then read
the value off the quote, then judge it.

* ``value`` is typed by the variable: CATEGORY → an enum of its categories (plus ``"other"``
  with ``allow_other``; a list of that enum for multi-select), NUMBER → number, DATE → an ISO
  8601 string (``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``; a ``pattern`` lets constrained decoders
  enforce it), BOOLEAN → boolean, TEXT → string. Before type checks, :mod:`extraction.codebook.values`
  normalises lenient answers (``"1,234"``, ``"March 2021"``, ``"phase 2"``); what it cannot read
  fails validation and the LLM layer re-asks with the message.
* ``value`` null ⇔ ``status`` not_found: the value decides. A null value is always not_found (a
  "found" with nothing in it is an absence). A value with status not_found is kept as found but
  marked ``contradicted``, and its confidence is halved (see :mod:`extraction.run.confidence`):
  dropping the value could lose a right answer, and re-asking rarely helps — measured with the
  bundled SmolLM2 under a grammar-constrained tool call, which answers ``"status": "not_found",
  "value": 42`` for "The answer is 42." and does the same when re-asked. Grounding still checks
  the quote, so a guess with an invented quote ends up at a quarter of its self-confidence.
* A **required** variable may still be not_found: "required" tells the prompt that most
  documents state it, it never licenses a guess; the absence is stored and shows in reports.
* **Length bounds**: ``evidence`` carries ``maxLength`` :data:`EVIDENCE_MAX_CHARS` and a TEXT
  value :data:`TEXT_MAX_CHARS`. Servers that compile the schema into a grammar (llama.cpp)
  enforce them while decoding, which stops a small model from rambling until ``max_tokens``
  (measured with SmolLM2: a per_document answer of 8 variables took ~1,000 tokens, ~70 s on
  one core, without them). A longer quote from another server is cut to the bound rather
  than rejected: a prefix of a real quote is still found in the document.
* ``confidence`` accepts percentages (``85`` or ``"85%"`` → 0.85) and is clamped to 0..1 rather
  than rejected; the schema carries no minimum/maximum because not every server accepts them.

Modes: **per_document** → one model with a field per variable, in codebook order, keyed by the
variable's name (an alias, so names such as ``model_x`` or ``json`` cannot clash with pydantic);
**per_variable** → the variable's answer object itself. Schemas use only ``type``, ``enum``,
``anyOf`` with null, ``$ref``/``$defs``, ``pattern``, ``maxLength``, ``description``, ``required`` and
``additionalProperties: false`` — what OpenAI tools, vLLM guided decoding, Ollama and
llama.cpp's grammar converter all accept. Property titles are dropped to save prompt tokens.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)

from extraction.codebook import values
from extraction.models import VariableType
from extraction.run.results import ExtractionModeName, VariableInfo, alias_pairs

__all__ = [
    "DATE_PATTERN",
    "DEFAULT_LAYOUT",
    "EVIDENCE_MAX_CHARS",
    "FOUND",
    "LAYOUTS",
    "NOT_FOUND",
    "TEXT_MAX_CHARS",
    "AnswerLayout",
    "DocumentAnswers",
    "VariableAnswer",
    "answer_model",
    "answers_by_variable",
    "document_model",
    "response_model",
]

FOUND = "found"
NOT_FOUND = "not_found"
#: ISO 8601 date, month or year (what DATE answers must look like after normalisation).
#: ``[0-9]``, not ``\d``: llama-cpp-python's schema-to-grammar converter rejects ``\d`` ("unknown
#: escape") and its server dies on the request.
DATE_PATTERN = r"^[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?$"
#: Longest evidence quote kept (the prompt asks for a short quote: a sentence or two).
EVIDENCE_MAX_CHARS = 300
#: Longest TEXT value accepted; a longer answer is re-asked with the validation error.
#: Not higher: llama-cpp-python 0.3.36 unrolls maxLength into nested grammar rules, and its
#: grammar parser fails ("failed to parse grammar") and the server process dies on a request
#: with maxLength 2000 in the demo codebook's schema; 1000 was measured to work.
TEXT_MAX_CHARS = 1000

_STATUS_ALIASES = {
    "found": FOUND, "stated": FOUND, "present": FOUND, "yes": FOUND, "true": FOUND,
    "not_found": NOT_FOUND, "notfound": NOT_FOUND, "not found": NOT_FOUND, "not-found": NOT_FOUND,
    "not_stated": NOT_FOUND, "not stated": NOT_FOUND, "absent": NOT_FOUND,
    "missing": NOT_FOUND, "no": NOT_FOUND, "false": NOT_FOUND, "none": NOT_FOUND,
}


def _tidy_schema(schema: dict[str, Any], _cls: type | None = None) -> None:
    """Drop the properties' titles (tokens, no meaning) and close the object to extra keys.

    The model's own title stays: instructor names the tool / json_schema after it.
    """
    for prop in (schema.get("properties") or {}).values():
        if isinstance(prop, dict):
            prop.pop("title", None)
    schema["additionalProperties"] = False


@dataclass(frozen=True)
class AnswerLayout:
    """The keys of one variable's answer object, in the order the model must write them.

    ``keys`` are the attribute names (``status``, ``evidence``, ``value``, ``confidence``);
    ``names`` what the model sees for each (the JSON key). Without ``status`` the outcome is
    derived: a null value is not_found.
    """

    name: str
    keys: tuple[str, ...]
    names: tuple[str, ...]
    #: The quote is a string, never null (an empty quote still means "none"): small models
    #: given the choice write null for every quote, which leaves every value ungrounded.
    quote_required: bool = False

    def key_for(self, attribute: str) -> str:
        return self.names[self.keys.index(attribute)]


#: The layouts the answer-schema benchmark compares (benchmarks/bench_answer_schema.py).
LAYOUTS: dict[str, AnswerLayout] = {
    layout.name: layout
    for layout in (
        AnswerLayout("status_first", ("status", "evidence", "value", "confidence"),
                     ("status", "evidence", "value", "confidence")),
        AnswerLayout("value_first", ("value", "evidence", "confidence"),
                     ("value", "evidence", "confidence")),
        AnswerLayout("evidence_first", ("evidence", "value", "confidence"),
                     ("evidence", "value", "confidence")),
        AnswerLayout("value_first_short", ("value", "evidence", "confidence"),
                     ("value", "quote", "conf")),
        AnswerLayout("value_first_quoted", ("value", "evidence", "confidence"),
                     ("value", "evidence", "confidence"), quote_required=True),
    )
}
#: The layout every call uses: chosen by measurement (docs/local-model.md, "Answer schema").
DEFAULT_LAYOUT = "value_first"


class VariableAnswer(BaseModel):
    """One variable's answer; subclasses made by :func:`answer_model` type ``value``.

    The keys (and their order) come from an :class:`AnswerLayout`; whatever the layout, an
    answer has ``value``, ``evidence``, ``confidence`` and the derived ``status``.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True,
                              json_schema_extra=_tidy_schema)

    variable: ClassVar[VariableInfo]
    layout: ClassVar[AnswerLayout]
    _contradicted: bool = PrivateAttr(default=False)
    _found: bool = PrivateAttr(default=False)

    # No descriptions on the shared keys: the system message states their rules once, and
    # per_document schemas would repeat them for every variable. Fields are added per layout.

    @field_validator("stated", mode="before", check_fields=False)
    @classmethod
    def _status(cls, raw: Any) -> Any:
        if isinstance(raw, str):
            return _STATUS_ALIASES.get(" ".join(raw.split()).lower(), raw)
        if raw is None:
            return NOT_FOUND
        return raw

    @field_validator("evidence", mode="before", check_fields=False)
    @classmethod
    def _evidence(cls, raw: Any) -> Any:
        if raw is None:
            return None
        if isinstance(raw, (list, tuple)):
            raw = " … ".join(str(part) for part in raw if part)
        text = str(raw).strip()[:EVIDENCE_MAX_CHARS].rstrip()
        return text or None

    @field_validator("value", mode="before", check_fields=False)
    @classmethod
    def _value(cls, raw: Any) -> Any:
        return values.normalize_value(cls.variable, raw)

    @field_validator("confidence", mode="before", check_fields=False)
    @classmethod
    def _confidence(cls, raw: Any) -> Any:
        if isinstance(raw, str):
            text = raw.strip().rstrip("%").strip()
            try:
                number = float(text)
            except ValueError:
                raise ValueError(f"confidence must be a number from 0 to 1, got {raw!r}") from None
            raw = number / 100 if raw.strip().endswith("%") else number
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ValueError(  # noqa: TRY004 - pydantic re-asks on ValueError, not TypeError
                f"confidence must be a number from 0 to 1, got {raw!r}")
        number = float(raw)
        if math.isnan(number):
            raise ValueError("confidence must be a number from 0 to 1, got NaN")
        if 1 < number <= 100:
            number /= 100
        return min(1.0, max(0.0, number))

    @model_validator(mode="after")
    def _status_follows_value(self) -> VariableAnswer:
        self._found = self.value is not None
        stated = getattr(self, "stated", None)
        self._contradicted = self._found and stated == NOT_FOUND
        return self

    @property
    def status(self) -> str:
        """found / not_found: a null value is not_found, whatever the model said."""
        return FOUND if self._found else NOT_FOUND

    @property
    def contradicted(self) -> bool:
        """Whether the model said not_found but still gave a value (kept, confidence lowered)."""
        return self._contradicted

    @property
    def found(self) -> bool:
        return self._found


class DocumentAnswers(BaseModel):
    """Answers for every variable of one document (per_document mode)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True,
                              json_schema_extra=_tidy_schema)

    variables: ClassVar[tuple[VariableInfo, ...]]

    def answers(self) -> dict[str, VariableAnswer]:
        """The answer of each variable, by variable name, in codebook order."""
        return {v.name: getattr(self, f"v{i}") for i, v in enumerate(self.variables)}


def _category_options(variable: VariableInfo) -> tuple[str, ...]:
    options = [str(c) for c in (variable.categories or ())]
    if variable.allow_other and values.OTHER.casefold() not in {o.casefold() for o in options}:
        options.append(values.OTHER)
    if not options:
        raise ValueError(f"CATEGORY variable {variable.name!r} has no categories")
    return tuple(options)


def _value_field(variable: VariableInfo) -> tuple[Any, Any]:
    vtype = VariableType(variable.type)
    if vtype is VariableType.CATEGORY:
        enum = Literal[_category_options(variable)]  # type: ignore[valid-type]
        if variable.multi_select:
            return (list[enum] | None,  # type: ignore[valid-type]
                    Field(description="every category that applies; null if none is stated"))
        return enum | None, Field(description="one of the categories; null if not stated")
    if vtype is VariableType.NUMBER:
        unit = f" in {variable.unit}" if variable.unit else ""
        return float | None, Field(description=f"a plain number{unit}; null if not stated")
    if vtype is VariableType.DATE:
        return (str | None, Field(pattern=DATE_PATTERN,
                                  description="ISO 8601: YYYY-MM-DD, YYYY-MM or YYYY; null if "
                                              "not stated"))
    if vtype is VariableType.BOOLEAN:
        return bool | None, Field(description="true or false; null if not stated")
    return (Annotated[str, Field(max_length=TEXT_MAX_CHARS)] | None,
            Field(description="the text answer; null if not stated"))


def _hashable(variable: VariableInfo) -> VariableInfo:
    """``variable`` with its categories as a tuple (models are cached by variable)."""
    if isinstance(variable.categories, list):
        variable = dataclasses.replace(variable, categories=tuple(variable.categories))
    if isinstance(variable.category_aliases, dict):
        variable = dataclasses.replace(variable,
                                       category_aliases=alias_pairs(variable.category_aliases))
    return variable


def _layout(layout: str | AnswerLayout | None) -> AnswerLayout:
    if isinstance(layout, AnswerLayout):
        return layout
    try:
        return LAYOUTS[layout or DEFAULT_LAYOUT]
    except KeyError:
        raise ValueError(f"unknown answer layout {layout!r}; use one of "
                         f"{', '.join(LAYOUTS)}") from None


def answer_model(variable: VariableInfo,
                 layout: str | AnswerLayout | None = None) -> type[VariableAnswer]:
    """The answer model of one variable (named after it, so a tool call reads ``phase``)."""
    return _answer_model(_hashable(variable), _layout(layout))


def _field(attribute: str, variable: VariableInfo, alias: str,
           quote_required: bool = False) -> tuple[Any, Any]:
    if attribute == "value":
        kind, info = _value_field(variable)
        info.alias = alias if alias != "value" else None
        return kind, info
    spec: dict[str, tuple[Any, Any]] = {
        "stated": (Literal["found", "not_found"], Field()),
        "evidence": (Annotated[str, Field(max_length=EVIDENCE_MAX_CHARS)] | None, Field()),
        "confidence": (float, Field()),
    }
    kind, info = spec[attribute]
    if attribute == "evidence" and quote_required:
        # the schema asks for a string; an empty one is still read as "no quote" (None)
        kind = Annotated[str | None, WithJsonSchema(
            {"type": "string", "maxLength": EVIDENCE_MAX_CHARS})]
    if alias != attribute:
        info = Field(alias=alias)
    return kind, info


@functools.lru_cache(maxsize=512)
def _answer_model(variable: VariableInfo, layout: AnswerLayout) -> type[VariableAnswer]:
    fields = {}
    for key, name in zip(layout.keys, layout.names):
        attribute = "stated" if key == "status" else key  # `status` is the derived property
        fields[attribute] = _field(attribute, variable, name, layout.quote_required)
    model = create_model(
        variable.name,
        __base__=VariableAnswer,
        __doc__=(variable.label or variable.name.replace("_", " ")).strip(),
        **fields,
    )
    model.variable = variable
    model.layout = layout
    return model


@functools.lru_cache(maxsize=128)
def _document_model(variables: tuple[VariableInfo, ...],
                    layout: AnswerLayout) -> type[DocumentAnswers]:
    fields: dict[str, Any] = {
        f"v{i}": (answer_model(v, layout), Field(alias=v.name)) for i, v in enumerate(variables)
    }
    model = create_model(
        "extraction",
        __base__=DocumentAnswers,
        __doc__="The answer for every variable, from the document.",
        **fields,
    )
    model.variables = variables
    return model


def document_model(variables: Sequence[VariableInfo],
                   layout: str | AnswerLayout | None = None) -> type[DocumentAnswers]:
    """One model answering every variable (codebook order), keyed by variable name."""
    if not variables:
        raise ValueError("a response model needs at least one variable")
    names = [v.name for v in variables]
    if len(set(names)) != len(names):
        raise ValueError("variable names must be unique within one response model")
    return _document_model(tuple(_hashable(v) for v in variables), _layout(layout))


def response_model(
    variables: Sequence[VariableInfo], mode: ExtractionModeName,
    layout: str | AnswerLayout | None = None,
) -> type[BaseModel]:
    """The model of one call: every variable (per_document) or the single one (per_variable)."""
    if mode == "per_variable":
        if len(variables) != 1:
            raise ValueError("per_variable calls answer exactly one variable")
        return answer_model(variables[0], layout)
    return document_model(variables, layout)


def answers_by_variable(
    output: BaseModel, variables: Sequence[VariableInfo]
) -> dict[str, VariableAnswer]:
    """The answer of each variable in a call's validated output, by variable name."""
    if isinstance(output, DocumentAnswers):
        return output.answers()
    if isinstance(output, VariableAnswer):
        return {variables[0].name: output}
    raise TypeError(f"not a response model output: {type(output).__name__}")
