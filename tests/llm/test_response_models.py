"""Response models from the codebook: schema shape, typing, normalisation and not_found."""

from __future__ import annotations

import json
import uuid

import pytest
from pydantic import ValidationError

from extraction.llm.response_models import (
    DATE_PATTERN,
    DEFAULT_LAYOUT,
    EVIDENCE_MAX_CHARS,
    LAYOUTS,
    TEXT_MAX_CHARS,
    answer_model,
    answers_by_variable,
    document_model,
    response_model,
)
from extraction.models import VariableType
from extraction.run.results import VariableInfo


def var(name: str, vtype: VariableType, **kw) -> VariableInfo:
    return VariableInfo(uuid.uuid4(), name, kw.pop("label", name.title()), vtype, **kw)


PHASE = var("phase", VariableType.CATEGORY, categories=("Phase 1", "Phase 2", "Phase 3"))
SPONSOR = var("sponsor_type", VariableType.CATEGORY, categories=("Industry", "Academic"),
              allow_other=True)
ARMS = var("arms", VariableType.CATEGORY, categories=("drug", "placebo"), multi_select=True)
ENROLLMENT = var("enrollment", VariableType.NUMBER, unit="participants")
START = var("start_date", VariableType.DATE)
RANDOMISED = var("randomized", VariableType.BOOLEAN)
TITLE = var("trial_title", VariableType.TEXT, required=True)
ALL = (TITLE, PHASE, SPONSOR, ARMS, ENROLLMENT, START, RANDOMISED)


def answer(value, evidence="quote", confidence=0.9) -> dict:
    return {"value": value, "evidence": evidence, "confidence": confidence}


def stated(value, status="found", evidence="quote", confidence=0.9) -> dict:
    """An answer of the status_first layout (the one measured worst, kept for comparison)."""
    return {"status": status, "evidence": evidence, "value": value, "confidence": confidence}


def test_per_document_schema_has_one_field_per_variable_in_codebook_order() -> None:
    schema = document_model(ALL).model_json_schema()
    assert list(schema["properties"]) == [v.name for v in ALL]
    assert schema["required"] == [v.name for v in ALL]
    assert schema["additionalProperties"] is False
    for v in ALL:
        sub = schema["$defs"][v.name]
        # the value first: a small model commits to an answer before it can talk itself
        # into "not found"; the status is derived from a null value
        assert list(sub["properties"]) == ["value", "evidence", "confidence"]
        assert sub["required"] == ["value", "evidence", "confidence"]
        assert sub["additionalProperties"] is False
        assert all("title" not in p for p in sub["properties"].values())


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_keeps_typed_values_evidence_confidence_and_not_found(layout) -> None:
    keys = {"value": "value", "evidence": "evidence", "confidence": "confidence"}
    keys.update({k: n for k, n in zip(LAYOUTS[layout].keys, LAYOUTS[layout].names)})
    model = answer_model(ENROLLMENT, layout)
    schema = model.model_json_schema()
    assert list(schema["properties"]) == list(LAYOUTS[layout].names)
    assert {"type": "number"} in schema["properties"][keys["value"]]["anyOf"]
    found = model.model_validate({keys["value"]: "1,204", keys["evidence"]: "1,204 enrolled",
                                  keys["confidence"]: 0.8, "status": "found"})
    assert (found.value, found.evidence, found.confidence, found.status) == (
        1204.0, "1,204 enrolled", 0.8, "found")
    absent = model.model_validate({keys["value"]: None, keys["evidence"]: None,
                                   keys["confidence"]: 0.9, "status": "not_found"})
    assert absent.status == "not_found" and not absent.found
    assert DEFAULT_LAYOUT in LAYOUTS


def _value_schema(variable: VariableInfo) -> dict:
    return answer_model(variable).model_json_schema()["properties"]["value"]


def test_value_types_per_variable_type() -> None:
    def branch(variable: VariableInfo) -> dict:
        options = _value_schema(variable)["anyOf"]
        assert {"type": "null"} in options, "every value must be nullable (not_found)"
        return next(o for o in options if o != {"type": "null"})

    assert branch(PHASE) == {"enum": ["Phase 1", "Phase 2", "Phase 3"], "type": "string"}
    assert branch(SPONSOR)["enum"] == ["Industry", "Academic", "other"]
    assert branch(ARMS) == {"items": {"enum": ["drug", "placebo"], "type": "string"},
                            "type": "array"}
    assert branch(ENROLLMENT) == {"type": "number"}
    assert branch(START) == {"type": "string", "pattern": DATE_PATTERN}
    assert branch(RANDOMISED) == {"type": "boolean"}
    assert branch(TITLE) == {"type": "string", "maxLength": TEXT_MAX_CHARS}
    assert "participants" in _value_schema(ENROLLMENT)["description"]


def test_schema_avoids_keywords_servers_reject() -> None:
    text = json.dumps(document_model(ALL).model_json_schema())
    for keyword in ("minimum", "maximum", "format", "default", "oneOf", "allOf",
                    "const", "exclusiveMinimum"):
        assert f'"{keyword}"' not in text, keyword


def test_free_text_is_length_bounded_and_long_quotes_are_cut_not_rejected() -> None:
    schema = answer_model(TITLE).model_json_schema()
    evidence = next(o for o in schema["properties"]["evidence"]["anyOf"] if o["type"] == "string")
    assert evidence["maxLength"] == EVIDENCE_MAX_CHARS  # grammar-constrained servers stop there
    quote = "The trial enrolled adults. " * 40
    answer = answer_model(TITLE).model_validate(
        {"status": "found", "evidence": quote, "value": "A title", "confidence": 0.9})
    assert answer.evidence is not None and len(answer.evidence) <= EVIDENCE_MAX_CHARS
    assert quote.startswith(answer.evidence)  # a prefix of the quote: still grounded
    with pytest.raises(ValidationError):
        answer_model(TITLE).model_validate(
            {"status": "found", "evidence": None, "value": "x" * (TEXT_MAX_CHARS + 1),
             "confidence": 0.9})


def test_lenient_values_are_normalised() -> None:
    model = document_model(ALL)
    out = model.model_validate({
        "trial_title": answer("  CARDIO-7 "),
        "phase": answer("phase 2"),
        "sponsor_type": answer("a charity"),
        "arms": answer("Drug, placebo"),
        "enrollment": answer("1,204 participants"),
        "start_date": answer("March 2021"),
        "randomized": answer("yes"),
    }).answers()
    assert {k: a.value for k, a in out.items()} == {
        "trial_title": "CARDIO-7", "phase": "Phase 2", "sponsor_type": "other",
        "arms": ["drug", "placebo"], "enrollment": 1204.0, "start_date": "2021-03",
        "randomized": True,
    }
    assert all(a.status == "found" for a in out.values())


def test_null_value_is_not_found_even_for_a_required_variable() -> None:
    parsed = answer_model(TITLE).model_validate(answer(None, evidence=None))
    assert parsed.status == "not_found" and parsed.value is None and not parsed.found
    placeholder = answer_model(TITLE).model_validate(answer("N/A"))
    assert placeholder.status == "not_found" and placeholder.value is None


def test_value_with_status_not_found_is_kept_and_marked_contradicted() -> None:
    model = answer_model(ENROLLMENT, "status_first")
    parsed = model.model_validate(stated(12, status="not_found"))
    assert parsed.status == "found" and parsed.value == 12.0 and parsed.contradicted
    assert not model.model_validate(stated(12)).contradicted
    assert not answer_model(ENROLLMENT).model_validate(answer(12)).contradicted


@pytest.mark.parametrize(("raw", "expected"), [(0.8, 0.8), (85, 0.85), ("90%", 0.9),
                                               ("0.3", 0.3), (-1, 0.0), (1.0, 1.0)])
def test_confidence_accepts_fractions_and_percentages(raw, expected) -> None:
    parsed = answer_model(ENROLLMENT).model_validate(answer(3, confidence=raw))
    assert parsed.confidence == pytest.approx(expected)


@pytest.mark.parametrize("status", ["Not Found", "not-found", "absent", None])
def test_status_variants_mean_not_found(status) -> None:
    parsed = answer_model(RANDOMISED, "status_first").model_validate(stated(None, status=status))
    assert parsed.status == "not_found"


@pytest.mark.parametrize(("variable", "raw"), [
    (PHASE, "Phase 7"), (ENROLLMENT, "several"), (START, "soon"), (RANDOMISED, "maybe"),
])
def test_unreadable_values_fail_validation_with_a_message_for_the_model(variable, raw) -> None:
    with pytest.raises(ValidationError) as info:
        answer_model(variable).model_validate(answer(raw))
    assert "value" in str(info.value)


def test_missing_key_and_wrong_json_fail() -> None:
    with pytest.raises(ValidationError):
        answer_model(PHASE).model_validate({"value": "Phase 1", "evidence": None})
    with pytest.raises(ValidationError):
        document_model(ALL).model_validate_json('{"phase": ')


def test_names_that_clash_with_pydantic_are_aliased() -> None:
    odd = (var("model_config", VariableType.TEXT), var("json", VariableType.NUMBER),
           var("schema", VariableType.BOOLEAN))
    model = document_model(odd)
    assert list(model.model_json_schema()["properties"]) == ["model_config", "json", "schema"]
    out = model.model_validate({"model_config": answer("x"), "json": answer("3"),
                                "schema": answer(True)})
    assert {k: a.value for k, a in answers_by_variable(out, odd).items()} == {
        "model_config": "x", "json": 3.0, "schema": True}


def test_response_model_per_mode() -> None:
    assert response_model([PHASE], "per_variable") is answer_model(PHASE)
    assert response_model(ALL, "per_document") is document_model(ALL)
    with pytest.raises(ValueError):
        response_model(ALL, "per_variable")
    with pytest.raises(ValueError):
        document_model([PHASE, PHASE])
    single = answer_model(PHASE).model_validate(answer("Phase 1"))
    assert answers_by_variable(single, [PHASE]) == {"phase": single}


def test_categories_given_as_a_list_still_build_a_model() -> None:
    listed = VariableInfo(uuid.uuid4(), "arm", "Arm", VariableType.CATEGORY,
                          categories=["drug", "placebo"])  # type: ignore[arg-type]
    assert answer_model(listed).model_validate(answer("Drug")).value == "drug"
    assert list(document_model([listed]).model_json_schema()["properties"]) == ["arm"]
