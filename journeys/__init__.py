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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from journeys.callbacks import Callbacks
    from journeys.menus import MenuService
    from journeys.payments import Payments


@dataclass
class Journeys:
    """The journey services one server runs (None: that journey is off); built by ``cli.node``."""

    menus: MenuService | None = None
    callbacks: Callbacks | None = None
    payments: Payments | None = None

    async def close(self) -> None:
        for service in (self.menus, self.callbacks, self.payments):
            if service is not None:
                await service.close()
