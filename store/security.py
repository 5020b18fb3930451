"""Secrets handling: passwords, bearer tokens, the at-rest encryption key, security phrases.

* Passwords: scrypt (memory-hard), per-password salt, parameters stored with the hash.
* Tokens (link tokens, API tokens, browser sessions): 256 random bits, stored as
  SHA-256 only. A KDF adds nothing for tokens this long; a fast hash keeps lookups O(1).
* At rest: AES-256-GCM with the server key; the record id is bound as associated
  data, so a ciphertext moved to another record does not decrypt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
PHRASE_WORDS = Path(__file__).with_name("words.txt").read_text().split()


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
