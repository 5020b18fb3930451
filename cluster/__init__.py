"""Several nodes: what VoxGate shares between servers through Redis (or Valkey), beside PostgreSQL.

- ``cluster.nodes``: each node's heartbeat, the owner of every live call (the node holding its media), the
  call-scoped requests another node must serve, and what happens to a dead node's calls (interrupted);
- ``cluster.bus``: events across nodes (a console on one node, a call's media on another);
- ``cluster.throttle``: rate limits the nodes share (sign-in, unknown links);
- ``cluster.asr``: decoding as jobs on a Redis Stream, taken by ``voxgate asr-worker`` processes.

One node needs none of this (embedded SQLite, in-process events). The interfaces these implement are the
callers' own (``calls.hub``, ``calls.limits``, ``calls.cluster``, ``models.decoding``); the composition root
(``cli.node``) plugs them in.

Imports: the standard library, ``redis``, and ``models`` (the ASR worker decodes with it). Never ``calls``,
``signaling``, ``identity``, ``media`` or ``cli``.
"""
