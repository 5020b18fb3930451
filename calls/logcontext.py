"""The call and the agent a log line is about, carried in context variables.

Set once where a call's work begins (the service's entry points); asyncio copies the context into every task
created after that, so the call's media, pipelines, subtitles and ID&V log with it and need no ids passed down.
``cli.logs`` reads these onto each record. Executor threads start with an empty context: their lines have no call
unless they log with ``extra={"call": ...}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

CALL_ID: ContextVar[str | None] = ContextVar("voxgate_call_id", default=None)
AGENT: ContextVar[str | None] = ContextVar("voxgate_agent", default=None)


def bind(call_id: str | None, agent: str | None = None) -> None:
    """For the rest of the current task (an aiohttp request runs in a task of its own) and every task it creates."""
    CALL_ID.set(call_id)
    AGENT.set(agent)


@contextmanager
def about(call_id: str | None, agent: str | None = None) -> Iterator[None]:
    """Only for the block: work done for a call inside a longer-lived task (a console's WebSocket)."""
    call_token, agent_token = CALL_ID.set(call_id), AGENT.set(agent)
    try:
        yield
    finally:
        AGENT.reset(agent_token)
        CALL_ID.reset(call_token)
