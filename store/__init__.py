"""Durable state, one small interface per aggregate, and the secrets that guard it.

``store.base`` names what the rest of VoxGate may ask of storage (agents, links
and calls, audit, the customer directory, voice prints and enrolments, ID&V
records, transcripts). ``store.sql`` implements those aggregates once, in SQL
both engines accept, over a small ``Db`` protocol; ``store.sqlite`` runs them
on one embedded SQLite file for a single node, ``store.postgres`` on a
PostgreSQL database that several nodes share. ``open_store`` picks one from a
location. Biometric and transcript payloads arrive sealed by the caller
(``store.security.Vault``): the store never sees them in the clear.

Imports: the standard library and ``cryptography``, and psycopg (``voxgate[cluster]``) only inside
``store.postgres``, only when a PostgreSQL store is opened. Never ``media``, ``models``, ``identity``,
``calls``, ``signaling`` or ``cli``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from store.base import Store


def open_store(location: str | Path, clock: Callable[[], float] = time.time) -> Store:
    """A ``postgresql://`` or ``postgres://`` URL opens ``PostgresStore``; anything else is a SQLite file's path."""
    if isinstance(location, str) and location.startswith(("postgresql://", "postgres://")):
        from store.postgres import PostgresStore

        return PostgresStore(location, clock=clock)
    from store.sqlite import SqliteStore

    return SqliteStore(location, clock=clock)
