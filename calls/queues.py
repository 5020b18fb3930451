"""Skill queues: which agents may take a queue's work, and which of them is free to take the next piece now.

An agent is *available* while a console of theirs is open and they have not set themselves away, and *free*
when, besides, no call of theirs is live. Work (a phone call, a menu's "talk to an agent", a callback) is
offered to the free agent with the queue's skills who has waited longest since their last piece of work.

On several nodes, consoles connect to the node that serves them and calls live on the node that holds their
media, so each node shares its part at every heartbeat (``snapshot``: who is here, who is busy here, and whom it
gave work) and reads the others' (``others``). A node's view is at most a heartbeat old: two nodes that offer work
within the same second may offer it to the same agent.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from calls.context import RoutingSettings
from store.base import Agent, Store

SKILL = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
TAKEN_KEPT = 30.0  # seconds a node tells the others it gave an agent work: the agent's own node takes it in by then


@dataclass
class Presence:
    consoles: int = 0  # open console sockets
    away: bool = False  # the agent said so
    since: float = 0.0  # when they arrived, came back or took work: the earliest has waited longest


class Queues:
    def __init__(self, store: Store, settings: RoutingSettings, busy: Callable[[], set[int]]) -> None:
        """``busy()``: the agents with a live call on this node (the call service knows)."""
        self.store, self.settings, self._busy = store, settings, busy
        self._presence: dict[int, Presence] = {}
        self._taken: dict[int, float] = {}  # work this node gave agents whose consoles are on other nodes
        self.others: Callable[[], Iterable[dict]] = tuple  # the other nodes' snapshots (a cluster sets this)

    # -- presence ----------------------------------------------------------------------------------------------

    def arrive(self, agent: Agent) -> None:
        p = self._presence.setdefault(agent.id, Presence(since=time.time()))
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
            p.away, p.since = away, time.time()

    def available(self, agent_id: int) -> bool:
        """A console of theirs is open on this node, and they are not away."""
        p = self._presence.get(agent_id)
        return p is not None and p.consoles > 0 and not p.away

    def status(self, agent: Agent) -> dict:
        p = self._presence.get(agent.id)
        return {
            "available": self.available(agent.id),
            "away": p is not None and p.away,
            "busy": agent.id in self._busy_anywhere(),
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
        """The free agent of the queue who has waited longest, on any node; taken (their wait starts again) when
        found."""
        waiting, busy = self._waiting(), self._busy_anywhere()
        free = [a for a in self.agents_for(queue) if a.id in waiting and a.id not in busy]
        if not free:
            return None
        agent = min(free, key=lambda a: (waiting[a.id], a.id))
        now = time.time()
        if agent.id in self._presence:
            self._presence[agent.id].since = now
        else:
            self._taken[agent.id] = now
        return agent

    # -- across nodes ------------------------------------------------------------------------------------------

    def snapshot(self) -> dict:
        """This node's part, for the others: who is here, who is busy here, and whom it gave work lately."""
        now = time.time()
        self._taken = {a: t for a, t in self._taken.items() if now - t < TAKEN_KEPT}
        return {
            "present": {str(a): {"away": p.away, "since": p.since} for a, p in self._presence.items()},
            "busy": sorted(self._busy()),
            "taken": {str(a): t for a, t in self._taken.items()},
        }

    def _waiting(self) -> dict[int, float]:
        """Every available agent, on any node, and since when they have waited. Work another node gave an agent
        of this node's is taken in here, so their wait starts again for good."""
        since = {a: p.since for a, p in self._presence.items() if p.consoles > 0 and not p.away}
        taken = dict(self._taken)
        for other in self.others():
            for key, p in other.get("present", {}).items():
                if not p["away"]:
                    since[int(key)] = max(since.get(int(key), 0.0), p["since"])
            for key, t in other.get("taken", {}).items():
                taken[int(key)] = max(taken.get(int(key), 0.0), t)
        for agent_id, t in taken.items():
            if (p := self._presence.get(agent_id)) is not None:
                p.since = max(p.since, t)
            if agent_id in since:
                since[agent_id] = max(since[agent_id], t)
        return since

    def _busy_anywhere(self) -> set[int]:
        busy = set(self._busy())
        for other in self.others():
            busy.update(other.get("busy", ()))
        return busy
