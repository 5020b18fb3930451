"""Journeys on one-time links besides a video call: a visual IVR menu, a callback with the customer's secret, a
payment on a provider's hosted page.

Each journey is one service (``menus``, ``callbacks``, ``payments``) over the store, with its settings in
``journeys.settings``. They make their links through ``calls.CallService`` (one link mechanism: token, phrase,
expiry, single use, the console's live states), record what the customer did as steps of the link and as
customer events (``calls.context``), and hand the customer to an agent through the skill queues
(``calls.queues``).

Imports: ``calls``, ``identity``, ``store`` and ``models``; aiohttp's client (providers, webhooks, the CRM), never
``aiohttp.web``. Never ``signaling`` or ``cli``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Journeys:
    """The journey services one server runs (None: that journey is off); built by ``cli.node``."""

    menus: Any = None
    callbacks: Any = None
    payments: Any = None

    async def close(self) -> None:
        for service in (self.menus, self.callbacks, self.payments):
            if service is not None and hasattr(service, "close"):
                await service.close()
