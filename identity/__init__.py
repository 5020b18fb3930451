"""Who is speaking: the ID&V flow, the customer directory, voice ID, its evaluation and calibration.

``idv`` is the ID&V state machine (pure: no I/O, an injected clock) and the
thin async ``LiveIdv`` that runs its lookups and codes; ``directory`` finds
customers (the embedded table or the operator's CRM over REST); ``voiceid``
keeps voice prints with consent and scores speech against them; ``live``
verifies a caller from the speech of a call's customer leg; ``evaluation``
measures and calibrates it all on recordings.

Imports: the standard library, numpy, aiohttp's client (never ``aiohttp.web``),
``store``, ``models`` and ``media`` (net speech). Never ``calls``,
``signaling`` or ``cli``.
"""
