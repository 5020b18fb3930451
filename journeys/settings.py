"""What an operator sets for the journeys: one dataclass per journey, gathered in ``JourneySettings``.

The CLI fills them from flags, a TOML file's ``[menus]``, ``[callbacks]`` and ``[payments]`` sections and
``VOXGATE_*`` variables (``cli.config``); their defaults are the CLI's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class MenuSettings:
    """The visual IVR (``journeys.menus``): the operator's menu files, and how long a customer may take."""

    enabled: bool = True
    dirs: tuple[Path, ...] = ()  # folders (or files) of menus, *.yaml / *.yml / *.json; none: the shipped example
    session_ttl: float = 1800.0  # seconds a started menu stays usable on the customer's phone
    crm_token: str | None = None  # sent as Authorization: Bearer to the REST URLs a menu's "show" reads
    crm_timeout: float = 5.0  # seconds to wait for one of those


@dataclass
class CallbackSettings:
    """Callbacks a customer books (``journeys.callbacks``): how far ahead, how often, and who hears of changes.

    A number is limited twice: a short-term limiter (this node's, or the nodes' shared one) and a daily cap
    counted in the store, which survives restarts: nobody can have a stranger's phone rung all day."""

    enabled: bool = True  # off: no booking API, no pages, no console queue
    max_days: int = 14  # how far ahead a window may end
    min_window: float = 900.0  # seconds: the shortest window a customer may give (an agent needs room)
    per_address: int = 10  # bookings (and tries) from one client address per hour
    per_number: int = 3  # bookings for one number per hour
    daily_per_number: int = 5  # bookings for one number per 24 hours (counted in the store)
    queue: str | None = None  # the skill queue callbacks go to unless a reason names another (None: routing's)
    attempts: int = 3  # calls without an answer before a callback ends as no_answer
    sms_webhook: str | None = None  # POSTed {callback_id, phone, status, text, status_url} on each change
    sms_secret: str | None = None  # signs those: X-VoxGate-Signature: t=..., v1=HMAC-SHA256(secret, "t.body")
    sms_timeout: float = 5.0  # seconds for one try of the webhook
    sms_retries: int = 3  # tries of one message before it is given up (logged)


@dataclass
class PaymentSettings:
    """Pay-by-link (``journeys.payments``): which provider's hosted page takes the card, and what may be asked.

    VoxGate never sees a card: the customer types it on the provider's page. Secrets here are never logged."""

    provider: str = "none"  # stripe (Stripe Checkout), redirect (the generic protocol) or none (journey off)
    provider_name: str = ""  # what the customer's button says ("Pay securely with ..."); default: the provider's
    stripe_secret_key: str | None = None  # sk_live_... / sk_test_... (a restricted key with Checkout write is enough)
    stripe_webhook_secrets: tuple[str, ...] = ()  # whsec_...: the endpoint's signing secret(s); two while rolling
    stripe_api_base: str = "https://api.stripe.com"  # tests: the local stand-in (peers.payments)
    redirect_url: str | None = None  # the generic provider's payment page
    redirect_secrets: tuple[str, ...] = ()  # the shared HMAC secret(s): the first signs redirects, any verifies
    currencies: tuple[str, ...] = ("gbp", "eur", "usd")  # ISO 4217, lower case: what an agent may ask for
    max_amount: int = 100_000  # minor units (100000 = 1,000.00): larger requests are refused
    webhook_tolerance: float = 300.0  # seconds a webhook's signed time may differ from ours (replays older fail)
    session_ttl: float = 1800.0  # seconds the provider's page stays payable (Stripe's minimum is 30 minutes)
    max_declines: int = 3  # declined cards on one payment page before VoxGate closes it (stops card testing)


@dataclass
class JourneySettings:
    menus: MenuSettings = field(default_factory=MenuSettings)
    callbacks: CallbackSettings = field(default_factory=CallbackSettings)
    payments: PaymentSettings = field(default_factory=PaymentSettings)
