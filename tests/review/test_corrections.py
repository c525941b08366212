"""Corrected values: the same value in different spellings compares equal, and is shown as one."""

from __future__ import annotations

from sqlalchemy.orm import Session

from extraction.review import corrections
from testing.review_factory import make_sample


def test_same_value_rules(session: Session) -> None:
    s = make_sample(session, {(0, "sponsor"): "x"})
    v = s.variables
    assert corrections.same_value(v["sponsor"], "Acme  Corp", "acme corp")
    assert not corrections.same_value(v["sponsor"], "Acme", None)
    assert corrections.same_value(v["enrollment"], 120.0, "120")
    assert not corrections.same_value(v["enrollment"], 120, 121)
    assert corrections.same_value(v["randomised"], True, "yes")
    assert corrections.same_value(v["sponsor"], None, "  ")
    assert corrections.format_value(["a", "b"]) == "a; b" and corrections.format_value(12.0) == "12"
