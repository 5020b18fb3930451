"""Why something is refused, in domain terms, for every room; the message is safe to show people.

Rooms raise these and carry no HTTP status: ``signaling`` maps each kind to
one status, in one place. They live here, at the bottom of the import order,
because every room above may refuse.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping


class Refused(Exception):
    """A request the domain turns down; ``message`` is for the person who made it. ``text``: the key of the
    same words in the customers' catalogues (``calls.texts``), for refusals a customer reads."""

    def __init__(self, message: str, text: str | None = None) -> None:
        super().__init__(message)
        self.message, self.text = message, text


class Invalid(Refused):
    """The input is malformed or out of range."""


def refuse_unknown(body: Mapping[str, object], allowed: Collection[str]) -> None:
    """A request that names a field it may not is refused, naming it: a misspelt field is said, not ignored."""
    if unknown := set(body) - set(allowed):
        raise Invalid(f"unknown fields: {', '.join(sorted(unknown))}")


class Unauthenticated(Refused):
    """Nobody is signed in, or the credential is wrong."""


class Forbidden(Refused):
    """Signed in, but not allowed to do this (another call's customer, a missing CSRF token)."""


class NotFound(Refused):
    """No such thing, or not one this person may see."""


class Conflict(Refused):
    """Not possible in the current state (a call not live, a step not open now)."""


class Gone(Refused):
    """It existed and is over: a link used, expired or revoked."""


class TooLarge(Refused):
    """A body or recording over its limit."""


class Throttled(Refused):
    """Too many attempts from one place; try again later."""


class AtCapacity(Refused):
    """A limit on live calls is reached; try again shortly."""
