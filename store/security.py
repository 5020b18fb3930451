"""Secrets handling: passwords, bearer tokens, the at-rest encryption key, security phrases.

* Passwords: scrypt (memory-hard), per-password salt, parameters stored with the hash.
* Tokens (link tokens, API tokens, browser sessions): 256 random bits, stored as
  SHA-256 only. A KDF adds nothing for tokens this long; a fast hash keeps lookups O(1).
* PINs: scrypt of an HMAC keyed with a key derived from the server's: four digits
  are only 10,000 candidates, so a stolen database alone must not be enough to try them.
* At rest: AES-256-GCM with the server key; the record id is bound as associated
  data, so a ciphertext moved to another record does not decrypt. The data folder is
  the owner's alone (0700, files 0600).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from store.errors import Throttled

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
PHRASE_WORDS = Path(__file__).with_name("words.txt").read_text().split()
T = TypeVar("T")


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, maxmem=64 * 2**20, **_SCRYPT)
    n, r, p = _SCRYPT["n"], _SCRYPT["r"], _SCRYPT["p"]
    return f"scrypt${n}${r}${p}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(
        password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32, maxmem=64 * 2**20
    )
    return hmac.compare_digest(candidate.hex(), digest)


def hash_pin(pin: str, pepper: bytes) -> str:
    """A PIN's hash, keyed: without the server's key, the 10,000 candidates cannot be tried offline."""
    return "hmac-" + hash_password(_keyed(pin, pepper))


def verify_pin(pin: str, stored: str, pepper: bytes) -> bool:
    """Against a keyed hash, or an unkeyed one stored by an earlier VoxGate (``pin_needs_rehash`` says so)."""
    if stored.startswith("hmac-"):
        return verify_password(_keyed(pin, pepper), stored[5:])
    return verify_password(pin, stored)


def pin_needs_rehash(stored: str) -> bool:
    return not stored.startswith("hmac-")


def _keyed(pin: str, pepper: bytes) -> str:
    return hmac.new(pepper, pin.encode(), hashlib.sha256).hexdigest()


class SecretChecks:
    """Password and PIN checks (scrypt: tens of ms of CPU each) on threads of their own, behind a bounded
    queue: a burst of sign-ins waits here, or is turned away, instead of filling the threads that serve files
    and set up calls. A name that does not exist costs a check like any other, so timing cannot tell names."""

    def __init__(self, pepper: bytes, workers: int | None = None, queue: int = 32) -> None:
        self.pepper = pepper
        # A quarter of the cores (one on a small machine): each check holds a core for its whole run, and the
        # event loop and the calls' media need the rest even while a flood is being checked.
        workers = workers or max(1, (os.cpu_count() or 1) // 4)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="secrets")
        self._room, self._pending = workers + queue, 0
        self._decoy = hash_password(new_token())

    async def password(self, password: str, stored: str | None) -> bool:
        """``stored`` None (no such agent): the same work against a decoy, and False."""
        ok = await self._run(verify_password, password, stored or self._decoy)
        return ok and stored is not None

    async def pin(self, pin: str, stored: str) -> bool:
        return await self._run(verify_pin, pin, stored, self.pepper)

    async def hash_pin(self, pin: str) -> str:
        return await self._run(hash_pin, pin, self.pepper)

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._pending >= self._room:
            raise Throttled("too many sign-ins at once; try again in a few seconds")
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self._pending -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False)


def private_dir(path: Path) -> Path:
    """Make ``path`` (the data folder) the owner's alone: the folder 0700, every file in it 0600. New files are
    created so by the process's umask, which ``serve`` and the CLI set to 077."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    for child in path.rglob("*"):
        if not child.is_symlink():
            child.chmod(0o700 if child.is_dir() else stat.S_IRUSR | stat.S_IWUSR)
    return path


def new_token(nbytes: int = 32) -> str:
    """A URL-safe random token: 32 bytes is 256 bits, 43 characters."""
    return secrets.token_urlsafe(nbytes)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def security_phrase(words: int = 3) -> str:
    """Three words both screens show, so a customer can check the caller really is the company."""
    return " ".join(secrets.choice(PHRASE_WORDS) for _ in range(words))


class Vault:
    """AES-256-GCM encryption at rest with one server key (32 bytes, from a file or the environment)."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the at-rest key must be 32 bytes (AES-256)")
        self._aead = AESGCM(key)
        self._key = key

    def derive(self, purpose: str) -> bytes:
        """A key of its own for ``purpose`` (the PIN pepper, say), so the at-rest key is used for one thing."""
        return hmac.new(self._key, f"voxgate:{purpose}".encode(), hashlib.sha256).digest()

    @classmethod
    def from_file(cls, path: Path) -> Vault:
        """Load the key, creating it (mode 0600) on first run; ``$VOXGATE_SECRET_KEY`` (base64) overrides."""
        if env := os.environ.get("VOXGATE_SECRET_KEY"):
            return cls(base64.b64decode(env))
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(base64.b64encode(AESGCM.generate_key(bit_length=256)))
        return cls(base64.b64decode(path.read_bytes()))

    def seal(self, plaintext: bytes, record: str) -> bytes:
        nonce = os.urandom(12)
        return b"VG1" + nonce + self._aead.encrypt(nonce, plaintext, record.encode())

    def open(self, sealed: bytes, record: str) -> bytes:
        if sealed[:3] != b"VG1":
            raise ValueError("not a VoxGate sealed record")
        return self._aead.decrypt(sealed[3:15], sealed[15:], record.encode())
