"""The answer contract of each variable type: the lines of a block that say how to answer.

Choices stated in the text itself (so the model and a reader see the same rule):

* NUMBER ranges are reported as their **midpoint** ("10–20" → 15) unless the variable's
  instructions say which end to use: a midpoint keeps the centre of the stated interval, and a
  user who wants a bound says so once in the instructions.
* DATE answers are ISO 8601 with partial dates allowed (``YYYY``, ``YYYY-MM``); relative dates
  are resolved only against an anchor stated in the document, else null.
* TEXT answers are short verbatim spans by default; a format hint or instructions that ask for
  a summary switch to a summarised answer (:func:`~extraction.prompts.budgets.text_style`).
"""

from __future__ import annotations

import json

from extraction.models import VariableType
from extraction.prompts.budgets import text_style
from extraction.prompts.variables import OTHER_CATEGORY, VariableLike

__all__ = ["TYPE_SUMMARY", "answer_contract"]


def _category_contract(variable: VariableLike) -> list[str]:
    from extraction.codebook.values import category_aliases  # here: codebook imports prompts

    categories = list(variable.categories or [])
    aliases = category_aliases(variable)
    listed = [f"  - {json.dumps(c, ensure_ascii=False)}"
              + (f" (also called: {', '.join(aliases[c])})" if aliases.get(c) else "")
              for c in categories]
    other = json.dumps(OTHER_CATEGORY)
    if variable.multi_select:
        lines = [
            ("- Answer with a JSON list of every category below that applies, each copied "
             "exactly as written here, without duplicates:"),
            *listed,
        ]
        if variable.allow_other:
            lines.append(f"- Include {other} for a value the document states that fits none of "
                         "the categories.")
        else:
            lines.append("- Leave out values that fit none of the categories; do not invent "
                         "categories.")
        lines.append("- If none applies or the document does not say, answer null (not an "
                     "empty list).")
    else:
        lines = [
            "- Answer with exactly one of these categories, copied exactly as written here:",
            *listed,
        ]
        if variable.allow_other:
            lines.append(f"- If the document states a value that fits none of the categories, "
                         f"answer {other}.")
            lines.append("- If the document does not say, answer null.")
        else:
            lines.append("- If the document states a value that fits none of the categories, or "
                         "does not say, answer null. Do not invent a category.")
    lines.append("- Match by meaning: a synonym, abbreviation or spelling variant of a category "
                 "counts as that category, but do not stretch a category to cover something "
                 "different.")
    return lines


def _number_contract(variable: VariableLike) -> list[str]:
    unit = (variable.unit or "").strip()
    if unit:
        unit_line = (f"- Unit: report the value in {unit}. If the document uses another unit, "
                     f"convert it to {unit}; if it cannot be converted reliably, answer null.")
    else:
        unit_line = ("- Unit: report the number in the unit the document uses; do not convert "
                     "it.")
    return [
        "- Answer with a plain JSON number: digits only, no unit, no words, no quotes.",
        unit_line,
        '- Written numbers become digits: "twelve" → 12, "1.2 million" → 1200000.',
        ('- Drop thousands separators and use a dot for decimals: "12,500" → 12500, '
         '"3,5" written with a decimal comma → 3.5.'),
        ('- Percentages: the number without the % sign ("45%" → 45), unless the unit says '
         "otherwise."),
        ('- A range ("10–20", "between 10 and 20"): report its midpoint (15), unless the '
         "instructions above say which end to use. Quote the whole range as evidence."),
        ('- An approximate or bounded value ("about 300", "over 300"): report the number stated '
         "(300)."),
        ("- If the document does not give this number, answer null; do not work it out from "
         "other figures unless the instructions above say how."),
    ]


def _date_contract(variable: VariableLike) -> list[str]:
    return [
        "- Answer with a date in ISO 8601 as a JSON string: \"YYYY-MM-DD\" (e.g. \"2021-03-14\").",
        ("- Partial dates are allowed: only a month and year → \"YYYY-MM\" (\"2021-03\"); only a "
         "year → \"YYYY\" (\"2021\"). Never invent a missing day or month."),
        ("- Relative dates (\"last March\", \"two weeks later\", \"yesterday\"): resolve them only "
         "when the document itself states the date they are relative to (e.g. the date of the "
         "letter); otherwise answer null."),
        ("- If the order of day and month is ambiguous (03/04/2021) and the document gives no "
         "clue, answer only the year."),
        ("- For a period, report its start unless the instructions above say otherwise. Leave out "
         "times of day and time zones."),
        "- If the document does not give this date, answer null.",
    ]


def _boolean_contract(variable: VariableLike) -> list[str]:
    return [
        "- Answer with a JSON boolean (true or false), or null.",
        "- true: the document states or clearly affirms it.",
        ("- false: the document states the opposite or explicitly denies it (e.g. \"no\", "
         "\"none\", \"was not\")."),
        ("- null: the document does not address it. Not mentioning something is not the same as "
         "false, unless the instructions above say that absence counts as false."),
        ("- Hedged or planned statements (\"may\", \"is planned\", \"if\") are not a clear true; "
         "answer null unless the instructions above say how to treat them."),
    ]


def _text_contract(variable: VariableLike) -> list[str]:
    style = text_style(variable)
    if style.style == "verbatim":
        first = (f"- Answer with the shortest passage that answers, copied word for word from the "
                 f"document ({style.bound}). Do not rephrase.")
    else:
        first = (f"- Answer with a summary in your own words ({style.bound}). Stay faithful to the "
                 "document and add nothing it does not say; the evidence quote must still be "
                 "exact words from the document.")
    return [
        "- Answer with a JSON string.",
        first,
        ('- If the document does not say, answer null, not an empty string, "N/A" or '
         '"not reported".'),
    ]


_CONTRACTS = {
    VariableType.TEXT: _text_contract,
    VariableType.CATEGORY: _category_contract,
    VariableType.NUMBER: _number_contract,
    VariableType.DATE: _date_contract,
    VariableType.BOOLEAN: _boolean_contract,
}

TYPE_SUMMARY = {
    VariableType.TEXT: "TEXT (a string)",
    VariableType.CATEGORY: "CATEGORY (one of the listed categories)",
    VariableType.NUMBER: "NUMBER (a number)",
    VariableType.DATE: "DATE (ISO 8601)",
    VariableType.BOOLEAN: "BOOLEAN (true/false)",
}


def answer_contract(variable: VariableLike) -> list[str]:
    """The "Answer format" lines of ``variable``'s block, by its type."""
    return _CONTRACTS[VariableType(variable.type)](variable)
