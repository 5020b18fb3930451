"""Signed messages between VoxGate and other systems: ``t=TIME,v1=HEX[,v1=HEX...]``, HMAC-SHA256 of
``TIME.PAYLOAD``. Stripe's scheme, reused: a payment provider's webhooks are checked with it, and VoxGate signs its
own (the generic provider's redirect, the callbacks' SMS webhook) the same way, so one receiver's code checks both.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

from store.errors import Invalid


class BadSignature(Invalid):
    """A webhook whose signature is missing, malformed, stale or wrong: never acted on."""


def sign(secret: str, timestamp: int, payload: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()


def signature_header(secret: str, payload: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={sign(secret, t, payload)}"


def verify_signature(
    header: str | None, payload: bytes, secrets: Sequence[str], now: float, tolerance: float = 300.0
) -> int:
    """The signed time, when one of the header's ``v1`` signatures is ``payload``'s under one of ``secrets`` and
    the time is within ``tolerance`` of ``now`` (an old capture replayed fails). Several ``v1`` values, and several
    secrets, let a secret be rolled without losing events. Other schemes (``v0``) are ignored."""
    if not header or not secrets:
        raise BadSignature("missing signature")
    timestamp, signatures = None, []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not timestamp.isdigit() or not signatures:
        raise BadSignature("malformed signature header")
    t = int(timestamp)
    if abs(now - t) > tolerance:
        raise BadSignature("signature timestamp outside the tolerance")
    expected = [sign(secret, t, payload) for secret in secrets]
    if not any(hmac.compare_digest(s, e) for s in signatures for e in expected):
        raise BadSignature("signature does not match")
    return t
