"""Speech engines behind small interfaces: VAD, ASR, MT, speaker embedding, anti-spoofing and TTS.

One interface per stage (``models.base``), one module per engine, a registry
(``models.registry``) that builds engines by name, and locators for the models
that ship inside PyPI packages (``models.locate``). ``models.routing`` picks the
translation route for a pair (with its quality tier); ``models.voices`` the
voice for a language. Engines are synchronous
and CPU-bound; callers decide where they run.

Imports: the standard library, numpy and the engines' own packages; no other
room of VoxGate (every room may import ``models``).
"""
