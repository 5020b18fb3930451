"""The ``voxgate`` command, and the composition root that builds one server from settings.

``cli.node`` builds everything a server runs (store, vault, engines and their
threads, voice ID, ID&V, the call service) from the settings dataclasses and
hands it to ``signaling.create_app``; ``cli.main`` parses flags whose defaults
come from those same dataclasses, and ``cli.config`` adds the same settings
from a TOML file and ``VOXGATE_*`` variables.

Imports: every room (``signaling``, ``calls``, ``identity``, ``media``,
``store``, ``models``); nothing imports ``cli``.
"""
