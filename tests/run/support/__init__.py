"""The value–quote check per type (extraction/run/support/): supported, unsupported and not
checkable. The variables the tests check against, and a shorthand for the verdict."""

from __future__ import annotations

import uuid
from typing import Any

from extraction.models import VariableType
from extraction.run.results import VariableInfo
from extraction.run.support import check_support


def var(kind: VariableType, name: str = "x", label: str = "", **kwargs: Any) -> VariableInfo:
    return VariableInfo(uuid.uuid4(), name, label, kind, **kwargs)


NUMBER = var(VariableType.NUMBER, "enrollment", "Participants enrolled", unit="participants")
DATE = var(VariableType.DATE, "start_date", "Start date")
PHASE = var(VariableType.CATEGORY, "phase", "Trial phase",
            categories=("Phase 1", "Phase 1/2", "Phase 2", "Phase 3", "Not applicable"))
SPONSOR = var(VariableType.CATEGORY, "sponsor_type", "Sponsor type",
              categories=("Industry", "Academic", "Government"), allow_other=True)
DESIGNS = var(VariableType.CATEGORY, "designs", "Designs", multi_select=True,
              categories=("cohort", "cross-sectional", "case-control"))
RANDOMIZED = var(VariableType.BOOLEAN, "randomized", "Randomized")
BLINDED = var(VariableType.BOOLEAN, "double_blind", "Double blind")
CONDITION = var(VariableType.TEXT, "condition", "Condition studied")


def status(variable: VariableInfo, value: Any, quote: str | None, **kwargs: Any) -> str:
    return check_support(variable, value, quote, **kwargs).status
