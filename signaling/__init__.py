"""The aiohttp server and the CLI: people, links, sessions, SDP, WebSocket events, auth, the store.

signaling/ owns people and their sessions. It builds engines from
configuration, creates a media pipeline per call leg and subscribes to its
events; it never looks inside audio.

Imports: ``media`` and ``models`` (one direction: signaling -> media -> models).
"""
