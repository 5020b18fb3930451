"""Genesys Cloud AudioHook at ``/audiohook``: a phone call's audio (both channels) in, transcripts back."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()
