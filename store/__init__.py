"""Durable state, one small interface per aggregate, and the secrets that guard it.

``store.base`` names what the rest of VoxGate may ask of storage (agents, links
and calls, audit, the customer directory, voice prints and enrolments, ID&V
records, transcripts); ``store.sqlite`` implements it on one embedded SQLite
file for a single node. A multi-node backend (PostgreSQL, Redis) implements
the same interfaces. Biometric and transcript payloads arrive sealed by the
caller (``store.security.Vault``): the store never sees them in the clear.

Imports: the standard library and ``cryptography`` only. Never ``media``,
``models``, ``identity``, ``calls``, ``signaling`` or ``cli``.
"""
