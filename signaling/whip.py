"""WHIP (RFC 9725) at ``/whip``: any WebRTC sender (a gateway, an SBC, GStreamer, OBS) streams a call in."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()
