"""The web edge: the aiohttp app factory, middleware, thin handlers by resource, and the WebSockets.

Handlers turn HTTP into calls on ``calls.CallService`` and ``identity.VoiceId``
and their answers back into JSON; domain refusals (``store.errors``) become
HTTP statuses in one place (``signaling.middleware``). Only this package and
the CLI's ``serve`` import ``aiohttp.web``.

Imports: ``calls``, ``identity``, ``media`` (SDP parsing, audio decoding),
``store`` and ``models``. Never ``cli``.
"""
