"""Flows that are entry points: calling one from Python bootstraps the process first.

Calling a flow from Python (``asyncio.run(full_run(...))``) is an entry point like the CLI,
and :func:`flows.bootstrap.bootstrap` has to happen before Prefect starts the run — and with
it, its temporary API server — which is before the flow function's first line. So the
flows of this package are :class:`EntryFlow` objects, made with :func:`entry_flow` instead
of ``prefect.flow``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from prefect import Flow

from flows.bootstrap import bootstrap

__all__ = ["EntryFlow", "entry_flow"]

F = TypeVar("F", bound=Callable[..., Any])


class EntryFlow(Flow):  # type: ignore[type-arg]
    """A Prefect flow that runs :func:`~flows.bootstrap.bootstrap` when it is called."""

    llm_stack: bool = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        bootstrap(llm_stack=self.llm_stack)
        return super().__call__(*args, **kwargs)

    def with_options(self, *args: Any, **kwargs: Any) -> EntryFlow:
        copy = super().with_options(*args, **kwargs)
        copy.__class__ = type(self)  # Prefect builds a plain Flow; keep the bootstrap
        copy.llm_stack = self.llm_stack
        return copy  # type: ignore[return-value]


def entry_flow(*, llm_stack: bool = False, **options: Any) -> Callable[[F], EntryFlow]:
    """Like ``prefect.flow(**options)``, making an :class:`EntryFlow`.

    Args:
        llm_stack: The flow extracts: its bootstrap also starts importing the LLM stack.
        **options: Prefect's flow options (name, hooks, task runner, ...).
    """

    def decorate(fn: F) -> EntryFlow:
        flow = EntryFlow(fn=fn, **options)
        flow.llm_stack = llm_stack
        return flow

    return decorate
