"""Errors an engine raises, each with a message a user can act on."""


class EngineError(Exception):
    """Base for every engine error; the CLI prints its message, not a traceback."""


class ModelUnavailable(EngineError):
    """An engine's package or model files are absent; the message says what to install or where to point."""


class UnsupportedLanguage(EngineError):
    """A language (or language pair) that no installed engine handles."""
