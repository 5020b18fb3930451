"""Live calls: one ``Call`` object per call, and the service that makes links, enforces limits and holds calls.

A ``Call`` owns everything that lives as long as the call: its media (WebRTC
today; a platform's audio stream next), one speech tap per leg, subtitles,
the translated voice each side may hear (``Interpreter``), live voice ID, the
ID&V (``LiveIdv``) and the customer's key. ``CallService``
creates links, checks the limits, starts and ends calls, and publishes their
events through the ``Hub``. ``access`` decides who may do what (sign-in, roles,
audited refusals); ``limits`` holds the throttles and call slots that stay
exact under concurrency. Refusals are ``store.errors`` kinds, never HTTP
statuses.

Imports: ``identity``, ``media``, ``models`` and ``store``; aiortc for session
descriptions. Never ``signaling`` or ``cli``, never ``aiohttp.web``.
"""
