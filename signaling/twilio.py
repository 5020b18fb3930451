"""Twilio Media Streams at ``/twilio/media``: a phone call's audio (inbound and outbound tracks) in."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()
