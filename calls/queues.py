"""Skill queues: which agents may take a queue's work, and which of them is free to take the next piece now.

An agent is *available* while a console of theirs is open and they have not set themselves away, and *free*
when, besides, no call of theirs is live. Work (a phone call, a menu's "talk to an agent", a callback) is
offered to the free agent with the queue's skills who has waited longest since their last piece of work. This
is one node's view: consoles connect to the node that serves them (see README, "Run several nodes").
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass

from calls.context import RoutingSettings
from store.base import Agent, Store

SKILL = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


@dataclass
class Presence:
    consoles: int = 0  # open console sockets
    away: bool = False  # the agent said so
    turn: int = 0  # when they last arrived, came back or took work: the lowest has waited longest


class Queues:
    def __init__(self, store: Store, settings: RoutingSettings, busy: Callable[[int], bool]) -> None:
        """``busy(agent_id)``: a call of theirs is live (the call service knows)."""
        self.store, self.settings, self._busy = store, settings, busy
        self._presence: dict[int, Presence] = {}
        self._turns = itertools.count(1)

    # -- presence ----------------------------------------------------------------------------------------------

    def arrive(self, agent: Agent) -> None:
        p = self._presence.setdefault(agent.id, Presence(turn=next(self._turns)))
        p.consoles += 1

    def leave(self, agent: Agent) -> None:
        p = self._presence.get(agent.id)
        if p is not None:
            p.consoles -= 1
            if p.consoles <= 0:
                del self._presence[agent.id]

    def set_away(self, agent: Agent, away: bool) -> None:
        p = self._presence.get(agent.id)
        if p is not None and p.away != away:
            p.away, p.turn = away, next(self._turns)

    def available(self, agent_id: int) -> bool:
        p = self._presence.get(agent_id)
        return p is not None and p.consoles > 0 and not p.away

    def status(self, agent: Agent) -> dict:
        p = self._presence.get(agent.id)
        return {
            "available": self.available(agent.id),
            "away": p is not None and p.away,
            "busy": self._busy(agent.id),
            "skills": list(agent.skills),
        }

    # -- queues ------------------------------------------------------------------------------------------------

    def skills(self, queue: str) -> tuple[str, ...]:
        return self.settings.queues.get(queue, ())

    def may_take(self, agent: Agent, queue: str) -> bool:
        return queue in self.settings.queues and set(self.skills(queue)) <= set(agent.skills)

    def queues_of(self, agent: Agent) -> list[str]:
        return [q for q in self.settings.queues if self.may_take(agent, q)]

    def agents_for(self, queue: str) -> list[Agent]:
        return [a for a in self.store.agents.active() if self.may_take(a, queue)]

    def first_available(self, queue: str) -> Agent | None:
        """The free agent of the queue who has waited longest; taken (their wait starts again) when found."""
        free = [a for a in self.agents_for(queue) if self.available(a.id) and not self._busy(a.id)]
        if not free:
            return None
        agent = min(free, key=lambda a: self._presence[a.id].turn)
        self._presence[agent.id].turn = next(self._turns)
        return agent
