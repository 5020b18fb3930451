"""Who may do what: agents signing in (throttled, constant-time), their roles, and every refusal audited.

Roles, least privilege first. Any agent works their own calls; beyond them:

=============================  =====  ==========  =====  =====
                               agent  supervisor  fraud  admin
=============================  =====  ==========  =====  =====
voice print: status, consent,  own    any         -      any
enrol, opt out
voice print: read status       own    any         any    any
fraud watch list: flag, add    -      -           any    any
voice print: delete            -      any         -      any
audit log: every row           -      any         any    any
=============================  =====  ==========  =====  =====

"own": a customer the agent has had a call with (named on its link, or identified by ID&V in it).
"""

from __future__ import annotations

from enum import StrEnum

from calls.limits import Limiters, local_limiters
from calls.metrics import Metrics
from store.base import Agent, Store
from store.errors import Forbidden, Invalid, Throttled, Unauthenticated
from store.security import SecretChecks

# Actors the server writes to the audit log itself: no agent may be named like them.
SYSTEM_ACTORS = frozenset(
    {"admin-cli", "audiohook", "cli", "customer", "idv", "login", "server", "system", "twilio", "voiceid", "whip"}
)


class Permission(StrEnum):
    PRINT_READ = "voiceprint.read"
    PRINT_ENROL = "voiceprint.enrol"  # consent, recordings, opt-out: the customer's own wishes, recorded
    PRINT_FLAG = "voiceprint.flag"  # the fraud watch list
    PRINT_DELETE = "voiceprint.delete"
    AUDIT_READ = "audit.read"
    EVENTS_WRITE = "events.write"  # customer events from other systems (calls.context)


# Permissions a role holds for any customer; an agent holds ``OWN`` for the customers of their calls only.
GRANTS: dict[str, frozenset[Permission]] = {
    "agent": frozenset(),
    "supervisor": frozenset(
        {Permission.PRINT_READ, Permission.PRINT_ENROL, Permission.PRINT_DELETE, Permission.AUDIT_READ}
    ),
    "fraud": frozenset({Permission.PRINT_READ, Permission.PRINT_FLAG, Permission.AUDIT_READ}),
    "admin": frozenset(Permission),
    "system": frozenset({Permission.EVENTS_WRITE}),
}
OWN = frozenset({Permission.PRINT_READ, Permission.PRINT_ENROL})


def check_agent_name(name: str) -> str:
    """Names sign in and sign the audit log: short, plain, and never one of the server's own actors."""
    if not (0 < len(name) <= 64 and name.isascii() and name.isprintable() and " " not in name):
        raise ValueError("an agent name is 1-64 letters, digits or punctuation, without spaces")
    if name.lower() in SYSTEM_ACTORS:
        raise ValueError(f"{name!r} is reserved for the server's own audit entries")
    return name


def customer_id(value: object) -> str:
    """A customer id as people type and systems send them: printable, at most 64 characters. No control or
    direction-changing characters (``isprintable`` refuses both): they would make the audit log and the console
    say something else."""
    if not isinstance(value, str) or not 0 < len(value) <= 64 or not value.isprintable():
        raise Invalid("customer id: 1-64 printable characters")
    return value


def printable(text: str, limit: int = 64) -> str:
    """Text from outside, safe to put in the audit log: printable characters only, and short."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit]) or "?"


class Access:
    """Sign-in and permissions for one server. Attempts are reserved before a password is checked, per address
    and per name, so a concurrent burst is held to the limit; refusals of permission are audited."""

    def __init__(
        self, store: Store, secrets: SecretChecks, metrics: Metrics, limiters: Limiters = local_limiters
    ) -> None:
        self.store, self.secrets, self.failures = store, secrets, metrics.sign_in_failures
        self.per_address = limiters("sign-in-address", 20, 60.0, 60.0)
        self.per_name = limiters("sign-in-name", 10, 900.0, 60.0)

    async def check_address(self, address: str) -> None:
        """Refuse an address that is locked out before anything else is done for it (its body is not even read):
        during a flood, each refusal is the cheapest the server can make."""
        if wait := await self.per_address.retry_after(f"address:{address}"):
            raise self._throttled(wait, "from this address")

    async def sign_in(self, name: str, password: str, address: str) -> Agent:
        by_address, by_name = f"address:{address}", f"name:{name.casefold()}"
        for throttle, key, what in (
            (self.per_address, by_address, "from this address"),
            (self.per_name, by_name, "for this name"),
        ):
            if not await throttle.take(key):  # reserved before the password is checked: a burst is held to it
                raise self._throttled(await throttle.retry_after(key), what)
        found = self.store.agents.login(name)
        if not await self.secrets.password(password, found[1] if found else None):
            locked = await self.per_name.retry_after(by_name) or await self.per_address.retry_after(by_address)
            detail = f"from {address}" + (f", locked for {int(locked)} s" if locked else "")
            self.store.audit.add("login", "login.fail", printable(name), detail)
            self.failures.labels("wrong").inc()
            raise Unauthenticated("wrong name or password")
        assert found is not None
        await self.per_address.refund(by_address)
        await self.per_name.forgive(by_name)
        self.store.audit.add(found[0].name, "login", None, address)
        return found[0]

    def _throttled(self, wait: float, what: str) -> Throttled:
        self.failures.labels("throttled").inc()
        return Throttled(f"too many failed sign-ins {what}; try again in {int(wait) + 1} s")

    def may(self, agent: Agent, permission: Permission, customer: str | None = None) -> bool:
        if permission in GRANTS.get(agent.role, frozenset()):
            return True
        return permission in OWN and customer is not None and self.store.links.served(agent.id, customer)

    def require(self, agent: Agent, permission: Permission, customer: str | None = None) -> None:
        """Refuse, and audit the refusal, unless the agent's role (or their own call) allows it."""
        if not self.may(agent, permission, customer):
            self.store.audit.add(agent.name, "access.denied", customer, f"{permission} (role {agent.role})")
            raise Forbidden(f"your role ({agent.role}) may not do this ({permission})")
