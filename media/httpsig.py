"""HTTP message signatures as AudioHook uses them (RFC 9421 shape, ``hmac-sha256`` keyed by the client secret).

The platform signs the request that opens the WebSocket: ``Signature-Input``
names the covered components (``@request-target``, ``@authority`` and the
AudioHook headers) and the signature's parameters (``keyid`` = the API key,
``nonce``, ``alg``, ``created``, ``expires``); ``Signature`` holds the HMAC of
the signature base built from them. ``Verifier`` checks all of it, refuses a
replayed nonce, and forgets each nonce once its signature would have expired
anyway. ``sign`` builds the headers (for our test client and the benchmarks).

Both header fields are RFC 8941 structured-field dictionaries: the small parser
and serialiser here cover what signatures use. The signature base is built from
the parsed and re-serialised parameters, so only a strictly well-formed input
verifies. Pure code with an injectable clock: no HTTP framework in here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# What AudioHook covers: the request line and host, and every AudioHook header.
AUDIOHOOK_COMPONENTS = (
    "@request-target",
    "@authority",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "x-api-key",
)
ALGORITHM = "hmac-sha256"


class SignatureError(Exception):
    """The request's signature does not hold; the message says why (it never holds a secret)."""


# -- RFC 8941 structured fields: the subset signatures use ------------------------------------------------------


class Token(str):
    """A structured-field token (serialised bare, unlike a string)."""


BareItem = int | float | str | bytes | bool
Params = tuple[tuple[str, BareItem], ...]


@dataclass(frozen=True)
class Item:
    value: BareItem
    params: Params = ()


@dataclass(frozen=True)
class InnerList:
    items: tuple[Item, ...]
    params: Params = ()


_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_TOKEN = re.compile(r"[A-Za-z*][A-Za-z0-9!#$%&'*+\-.^_`|~:/]*")
_NUMBER = re.compile(r"-?\d{1,15}(\.\d{1,3})?")
_BYTES = re.compile(r":([A-Za-z0-9+/=]*):")


class _Parser:
    def __init__(self, text: str) -> None:
        self.s, self.i = text.strip(" \t"), 0

    def fail(self, what: str) -> SignatureError:
        return SignatureError(f"malformed structured field: {what} at character {self.i}")

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def dictionary(self) -> dict[str, Item | InnerList]:
        members: dict[str, Item | InnerList] = {}
        while self.i < len(self.s):
            key = self.key()
            if self.peek() == "=":
                self.i += 1
                members[key] = self.inner_list() if self.peek() == "(" else self.item()
            else:
                members[key] = Item(True, self.params())
            self.skip_ows()
            if self.i == len(self.s):
                break
            if self.peek() != ",":
                raise self.fail("expected ','")
            self.i += 1
            self.skip_ows()
            if self.i == len(self.s):
                raise self.fail("trailing ','")
        return members

    def skip_ows(self) -> None:
        while self.peek() in (" ", "\t"):
            self.i += 1

    def key(self) -> str:
        m = _KEY.match(self.s, self.i)
        if not m:
            raise self.fail("expected a key")
        self.i = m.end()
        return m.group()

    def inner_list(self) -> InnerList:
        self.i += 1  # (
        items: list[Item] = []
        while True:
            while self.peek() == " ":
                self.i += 1
            if self.peek() == ")":
                self.i += 1
                return InnerList(tuple(items), self.params())
            items.append(self.item())
            if self.peek() not in (" ", ")"):
                raise self.fail("expected ' ' or ')' in an inner list")

    def item(self) -> Item:
        return Item(self.bare_item(), self.params())

    def params(self) -> Params:
        params: list[tuple[str, BareItem]] = []
        while self.peek() == ";":
            self.i += 1
            while self.peek() == " ":
                self.i += 1
            key = self.key()
            value: BareItem = True
            if self.peek() == "=":
                self.i += 1
                value = self.bare_item()
            params = [p for p in params if p[0] != key] + [(key, value)]
        return tuple(params)

    def bare_item(self) -> BareItem:
        c = self.peek()
        if c == '"':
            return self.string()
        if c == ":":
            m = _BYTES.match(self.s, self.i)
            if not m:
                raise self.fail("bad byte sequence")
            self.i = m.end()
            try:
                return base64.b64decode(m.group(1), validate=True)
            except binascii.Error:
                raise self.fail("bad base64") from None
        if c == "?":
            if self.s[self.i : self.i + 2] not in ("?0", "?1"):
                raise self.fail("bad boolean")
            self.i += 2
            return self.s[self.i - 1] == "1"
        if c == "-" or c.isdigit():
            m = _NUMBER.match(self.s, self.i)
            if not m:
                raise self.fail("bad number")
            self.i = m.end()
            return float(m.group()) if m.group(1) else int(m.group())
        m = _TOKEN.match(self.s, self.i)
        if not m:
            raise self.fail("expected an item")
        self.i = m.end()
        return Token(m.group())

    def string(self) -> str:
        out, self.i = [], self.i + 1
        while self.i < len(self.s):
            c = self.s[self.i]
            self.i += 1
            if c == "\\":
                if self.peek() not in ('"', "\\"):
                    raise self.fail("bad escape in a string")
                out.append(self.peek())
                self.i += 1
            elif c == '"':
                return "".join(out)
            elif not " " <= c <= "~":
                raise self.fail("bad character in a string")
            else:
                out.append(c)
        raise self.fail("unterminated string")


def parse_dictionary(text: str) -> dict[str, Item | InnerList]:
    return _Parser(text).dictionary()


def serialize_bare(value: BareItem) -> str:
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, Token):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode() + ":"
    if isinstance(value, float):
        text = f"{value:.3f}".rstrip("0")
        return text + "0" if text.endswith(".") else text
    return str(value)


def serialize_params(params: Params) -> str:
    return "".join(f";{k}" if v is True else f";{k}={serialize_bare(v)}" for k, v in params)


def serialize_inner_list(inner: InnerList) -> str:
    items = " ".join(serialize_bare(i.value) + serialize_params(i.params) for i in inner.items)
    return f"({items}){serialize_params(inner.params)}"


# -- signatures ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedRequest:
    """What a signature covers in a request: the target (path and query as sent), the host, the headers."""

    target: str
    authority: str
    headers: Mapping[str, str]  # case-insensitive lookup (aiohttp's CIMultiDict), or lower-case names

    def component(self, name: str) -> str:
        if name == "@request-target":
            return self.target
        if name == "@authority":
            return self.authority.lower()
        if name.startswith("@"):
            raise SignatureError(f"unsupported derived component {name!r}")
        value = self.headers.get(name)
        if value is None:
            raise SignatureError(f"the signed header {name!r} is missing")
        return canonical(value)


def canonical(value: str) -> str:
    """A header value as signed: trimmed, obsolete line folding turned into one space."""
    return re.sub(r"[ \t]*\r\n[ \t]+", " ", value.strip())


def signature_base(request: SignedRequest, signature_params: InnerList) -> bytes:
    """RFC 9421's signature base: one line per covered component, then ``@signature-params``."""
    lines = []
    for item in signature_params.items:
        if item.params:
            raise SignatureError(f"component parameters are not supported ({serialize_bare(item.value)})")
        if not isinstance(item.value, str) or isinstance(item.value, Token):
            raise SignatureError("covered components must be strings")
        lines.append(f"{serialize_bare(item.value)}: {request.component(item.value)}")
    lines.append(f'"@signature-params": {serialize_inner_list(signature_params)}')
    return "\n".join(lines).encode()


def _hmac(secret: bytes, base: bytes) -> bytes:
    return hmac.new(secret, base, hashlib.sha256).digest()


def sign(
    request: SignedRequest,
    *,
    key_id: str,
    secret: bytes,
    created: int | None = None,
    lifetime: int = 30,
    nonce: str | None = None,
    components: tuple[str, ...] = AUDIOHOOK_COMPONENTS,
    label: str = "sig1",
) -> dict[str, str]:
    """The ``Signature-Input`` and ``Signature`` headers for ``request``, as the platform sends them."""
    created = int(time.time()) if created is None else created
    params: Params = (
        ("keyid", key_id),
        ("nonce", nonce or base64.b64encode(secrets.token_bytes(18)).decode()),
        ("alg", ALGORITHM),
        ("created", created),
        ("expires", created + lifetime),
    )
    inner = InnerList(tuple(Item(c) for c in components), params)
    signature = _hmac(secret, signature_base(request, inner))
    return {
        "Signature-Input": f"{label}={serialize_inner_list(inner)}",
        "Signature": f"{label}={serialize_bare(signature)}",
    }


@dataclass(frozen=True)
class Signature:
    """A verified signature's parameters."""

    key_id: str
    nonce: str
    created: int
    expires: int | None


class ReplayCache:
    """Nonces seen, each kept until its signature would have expired anyway; bounded."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._until: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._until)

    def add(self, nonce: str, until: float, now: float) -> None:
        """Remember ``nonce`` until ``until``; refuse it if it is remembered already."""
        if nonce in self._until and self._until[nonce] >= now:
            raise SignatureError("this signature's nonce was used before (a replayed request)")
        if len(self._until) >= self.size:
            self._until = {n: t for n, t in self._until.items() if t >= now}
            if len(self._until) >= self.size:  # never forget a live nonce: that would reopen its replay
                raise SignatureError("too many signed requests at once; try again shortly")
        self._until[nonce] = until


class Verifier:
    """Checks AudioHook request signatures: components, key, algorithm, freshness and nonce.

    ``max_age``: how long after ``created`` a signature is accepted (``expires`` may shorten it); ``skew``: the
    clock difference allowed between the platform and us.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        max_age: float = 30.0,
        skew: float = 5.0,
        required: tuple[str, ...] = AUDIOHOOK_COMPONENTS,
        replay: ReplayCache | None = None,
    ) -> None:
        self.clock, self.max_age, self.skew, self.required = clock, max_age, skew, required
        self.replay = replay or ReplayCache()

    def verify(self, request: SignedRequest, api_key: str, secret: bytes) -> Signature:
        """The signature of ``request``, made with ``secret`` for ``api_key``, or ``SignatureError``."""
        label, inner, signature = self._parse(request)
        params = dict(inner.params)
        unknown = set(params) - {"keyid", "nonce", "alg", "created", "expires"}
        if unknown:
            raise SignatureError(f"unknown signature parameter {sorted(unknown)[0]!r}")
        key_id, nonce, alg = params.get("keyid"), params.get("nonce"), params.get("alg", ALGORITHM)
        created, expires = params.get("created"), params.get("expires")
        if not isinstance(key_id, str) or not hmac.compare_digest(key_id.encode(), api_key.encode()):
            raise SignatureError("the signature's keyid is not the X-API-KEY")
        if alg != ALGORITHM:
            raise SignatureError(f"unsupported signature algorithm {alg!r}")
        if not isinstance(nonce, str) or len(nonce) < 16:
            raise SignatureError("the signature has no nonce (or one too short to be unique)")
        if not _timestamp(created) or (expires is not None and not _timestamp(expires)):
            raise SignatureError("the signature needs integer 'created' (and 'expires') times")
        covered = [i.value for i in inner.items]
        missing = [c for c in self.required if c not in covered]
        if missing:
            raise SignatureError(f"the signature does not cover {', '.join(missing)}")
        if len(set(covered)) != len(covered):
            raise SignatureError("a component is covered twice")
        now = self.clock()
        if created > now + self.skew:
            raise SignatureError("the signature was created in the future")
        until = min(created + self.max_age, expires if expires is not None else float("inf"))
        if until < now - self.skew:
            raise SignatureError("the signature has expired")
        if not hmac.compare_digest(_hmac(secret, signature_base(request, inner)), signature):
            raise SignatureError(f"the signature {label!r} does not match")
        self.replay.add(nonce, until + self.skew, now)  # only a verified nonce is remembered
        return Signature(key_id, nonce, created, expires)

    @staticmethod
    def _parse(request: SignedRequest) -> tuple[str, InnerList, bytes]:
        inputs = request.headers.get("signature-input")
        values = request.headers.get("signature")
        if not inputs or not values:
            raise SignatureError("the request is not signed (no Signature-Input and Signature headers)")
        inputs_dict, values_dict = parse_dictionary(inputs), parse_dictionary(values)
        if not inputs_dict:
            raise SignatureError("Signature-Input is empty")
        label, inner = next(iter(inputs_dict.items()))
        value = values_dict.get(label)
        if not isinstance(inner, InnerList):
            raise SignatureError(f"Signature-Input {label!r} is not a list of components")
        if not isinstance(value, Item) or not isinstance(value.value, bytes):
            raise SignatureError(f"no Signature {label!r} (a byte sequence) for the Signature-Input")
        return label, inner, value.value


def _timestamp(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
