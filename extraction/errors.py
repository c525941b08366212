"""One error root for everything a user can hit, shaped as problem details (RFC 9457).

Each error carries what a user needs to act: a stable ``type`` slug, a short ``title``, a
``detail`` sentence, and where possible the offending ``field`` (a variable name, a YAML path,
a workbook cell) or ``instance`` (an id or a file). The CLI turns them into readable messages
or, with ``--json``, into the problem object itself; library code only raises them.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ExtractflowError",
    "ValidationError",
    "NotFoundError",
    "ConflictError",
    "ConfigError",
    "DatabaseError",
    "DocumentError",
    "FatalRunError",
    "LLMError",
    "StateError",
    "is_fatal",
]


class ExtractflowError(Exception):
    """Root of extractflow's errors. Subclasses set ``type``, ``title`` and ``exit_code``.

    ``fatal`` marks an error that would fail every document of a run the same way (bad
    credentials, an unknown model, a configuration the server rejects): a run, or a batch
    of refinement requests, stops at the first one instead of repeating it. Test it with
    :func:`is_fatal`.
    """

    type: str = "error"
    title: str = "extractflow error"
    exit_code: int = 1
    fatal: bool = False

    def __init__(
        self,
        detail: str,
        *,
        field: str | None = None,
        instance: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.instance = instance
        self.extra = dict(extra or {})

    def to_problem(self) -> dict[str, Any]:
        """The problem-details object: type, title, detail, and the optional context."""
        problem: dict[str, Any] = {
            "type": f"https://extractflow.dev/problems/{self.type}",
            "title": self.title,
            "detail": self.detail,
        }
        if self.field is not None:
            problem["field"] = self.field
        if self.instance is not None:
            problem["instance"] = self.instance
        problem.update(self.extra)
        return problem

    def __str__(self) -> str:
        where = f" [{self.field}]" if self.field else ""
        return f"{self.title}{where}: {self.detail}"


class ValidationError(ExtractflowError):
    """Input that breaks a rule of the codebook, a file format or an option."""

    type = "validation-error"
    title = "Invalid input"
    exit_code = 4


class NotFoundError(ExtractflowError):
    """A project, variable, document, job or extraction that does not exist."""

    type = "not-found"
    title = "Not found"
    exit_code = 3


class ConflictError(ExtractflowError):
    """A name or object that already exists, or a change that would clash with one."""

    type = "conflict"
    title = "Conflict"
    exit_code = 5


class StateError(ExtractflowError):
    """An operation that the current state does not allow (e.g. an illegal job transition)."""

    type = "invalid-state"
    title = "Not allowed in the current state"
    exit_code = 6


class ConfigError(ExtractflowError):
    """Settings that cannot work (bad URL, missing endpoint, unknown mode)."""

    type = "config-error"
    title = "Configuration problem"
    exit_code = 7


class DatabaseError(ExtractflowError):
    """The database is unreachable or not at the expected schema revision."""

    type = "database-error"
    title = "Database problem"
    exit_code = 8


class DocumentError(ExtractflowError):
    """A document that cannot be read or parsed."""

    type = "document-error"
    title = "Document problem"
    exit_code = 9


class LLMError(ExtractflowError):
    """The LLM provider failed after the allowed retries, or answered unusably."""

    type = "llm-error"
    title = "LLM provider problem"
    exit_code = 10

    def __init__(
        self,
        detail: str,
        *,
        attempts: int | None = None,
        status_code: int | None = None,
        retryable: bool = False,
        fatal: bool = False,
        **kwargs: Any,
    ) -> None:
        extra = dict(kwargs.pop("extra", None) or {})
        if attempts is not None:
            extra["attempts"] = attempts
        if status_code is not None:
            extra["status_code"] = status_code
        # The problem object says "fatal": true too (``--json`` shows it); an error rebuilt
        # from such a problem's fields is fatal again.
        fatal = fatal or bool(extra.get("fatal"))
        if fatal:
            extra["fatal"] = True
        super().__init__(detail, extra=extra, **kwargs)
        self.attempts = attempts
        self.status_code = status_code
        self.retryable = retryable
        self.fatal = fatal


class FatalRunError(ExtractflowError):
    """A run cannot go on (every further document would fail the same way).

    Raised by the extract stage for the first fatal engine error (``cause``), or when the LLM
    server stayed unreachable for too many documents in a row; the job ends FAILED with
    ``reason``.
    """

    type = "run-stopped"
    title = "Run stopped"
    exit_code = 10
    fatal = True

    def __init__(self, reason: str, cause: BaseException | None = None, **kwargs: Any) -> None:
        super().__init__(reason, **kwargs)
        self.reason = reason
        self.cause = cause


def is_fatal(exc: BaseException | None) -> bool:
    """Whether ``exc`` would fail every document the same way, so the run must stop."""
    return isinstance(exc, ExtractflowError) and exc.fatal
