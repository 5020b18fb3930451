"""What other systems saw a customer do lately (a declined payment, a failed sign-in), and why they may be calling.

Events arrive by ``POST /api/events`` (and from the journeys: a menu's choices, a payment's result) and count for
the routing window. When a call or a callback arrives, the newest event whose type the operator mapped to a
``Reason`` names the likely reason: the console greets the call with it, and the call goes to the reason's queue.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from store.base import Customer, CustomerEvent, Store, phone_key
from store.errors import Invalid

EVENT_TYPE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
MAX_DETAIL = 2048  # bytes of an event's detail, as JSON: a few named facts, never a document


@dataclass(frozen=True)
class Reason:
    """Why a customer with a recent event of ``type`` is likely calling, and the queue such calls go to."""

    type: str
    label: str
    greeting: str
    queue: str

    def to_dict(self) -> dict:
        return {"type": self.type, "label": self.label, "greeting": self.greeting, "queue": self.queue}


@dataclass
class RoutingSettings:
    """Queues (by name: the skills an agent needs to take its calls) and reasons (by event type)."""

    queues: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"general": ()})
    reasons: dict[str, Reason] = field(default_factory=dict)
    default_queue: str = "general"
    window: float = 3600.0  # how long an event may explain a call

    def check(self) -> None:
        """Every reason's queue, and the default, must exist: a typo would strand calls."""
        for name in (self.default_queue, *(r.queue for r in self.reasons.values())):
            if name not in self.queues:
                raise ValueError(f"routing: no queue {name!r} (queues: {', '.join(sorted(self.queues))})")


def load_routing(path: Path) -> RoutingSettings:
    """The operator's routing file (TOML)::

        window_minutes = 60
        default_queue = "general"
        [queues]
        general = []
        cards = ["cards"]
        [reasons."payment.declined"]
        label = "Declined card payment"
        greeting = "A card payment of theirs was declined recently."
        queue = "cards"

    Raises ``ValueError`` naming the file and what is wrong."""
    try:
        data = tomllib.loads(Path(path).read_text())
        queues = {}
        for name, skills in data.get("queues", {}).items():
            if not isinstance(skills, list) or not all(isinstance(s, str) for s in skills):
                raise ValueError(f'queues.{name}: a list of skills, such as ["cards"]')
            queues[name] = tuple(skills)
        reasons = {
            str(kind): Reason(str(kind), str(r["label"]), str(r.get("greeting", r["label"])), str(r["queue"]))
            for kind, r in data.get("reasons", {}).items()
        }
        unknown = set(data) - {"window_minutes", "default_queue", "queues", "reasons"}
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
        settings = RoutingSettings(
            queues=queues or {"general": ()},
            reasons=reasons,
            default_queue=str(data.get("default_queue", "general")),
            window=float(data.get("window_minutes", 60)) * 60,
        )
        bad = [k for k in reasons if not EVENT_TYPE.fullmatch(k)]
        if bad:
            raise ValueError(f"reasons: {bad[0]!r} is not an event type (lower-case, such as payment.declined)")
        settings.check()
    except OSError as e:
        raise ValueError(f"{path}: cannot read it ({e.strerror})") from None
    except (tomllib.TOMLDecodeError, KeyError, TypeError, AttributeError, ValueError) as e:
        what = f"missing {e}" if isinstance(e, KeyError) else str(e)
        raise ValueError(f"{path}: {what}") from None
    return settings


@dataclass(frozen=True)
class CallContext:
    """What the console shows as a call arrives: the likely reason and the events behind it."""

    reason: Reason | None
    events: list[CustomerEvent]

    def to_dict(self) -> dict:
        return {
            "reason": self.reason.to_dict() if self.reason else None,
            "events": [{k: v for k, v in e.to_dict().items() if k != "id"} for e in self.events],
        }


class Context:
    def __init__(self, store: Store, settings: RoutingSettings) -> None:
        self.store, self.settings = store, settings

    def record(
        self, customer_id: str | None, phone: str | None, type: str, detail: dict | None, source: str
    ) -> CustomerEvent:
        """One event about a customer, known by their id or, failing that, their number."""
        if not isinstance(type, str) or not EVENT_TYPE.fullmatch(type):
            raise Invalid("type: lower-case letters, digits and . _ - (such as payment.declined), at most 64")
        subject = _subjects(customer_id, phone)
        if not subject:
            raise Invalid("an event names the customer: customer_id or phone")
        detail = _detail(detail)
        self.store.events.prune(self.store.clock() - max(self.settings.window, 86400.0))
        return self.store.events.add(subject[0], type, detail, source)

    def of(self, customer_id: str | None, phone: str | None) -> CallContext:
        """The events of the window about this customer: by id, by number, and by the ids the directory gives
        that number (a caller who has not said who they are yet)."""
        subjects = _subjects(customer_id, phone)
        if phone and not customer_id:
            subjects += [s for c in self._by_phone(phone) for s in _subjects(c.id, None)]
        events = self.store.events.recent(subjects, self.store.clock() - self.settings.window)
        reason = next((self.settings.reasons[e.type] for e in events if e.type in self.settings.reasons), None)
        return CallContext(reason, events[:20])

    def _by_phone(self, phone: str) -> list[Customer]:
        return self.store.customers.by_phone(phone)[:5]


def _subjects(customer_id: str | None, phone: str | None) -> list[str]:
    subjects = []
    if isinstance(customer_id, str) and customer_id.strip():
        subjects.append(f"customer:{customer_id.strip().lower()}")
    if isinstance(phone, str) and (key := phone_key(phone)).lstrip("+"):
        subjects.append(f"phone:{key}")
    return subjects


def _detail(detail: object) -> dict:
    if detail is None:
        return {}
    if not isinstance(detail, dict) or len(json.dumps(detail)) > MAX_DETAIL:
        raise Invalid(f"detail: a JSON object of at most {MAX_DETAIL} bytes")
    return detail
