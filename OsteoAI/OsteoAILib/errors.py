"""Errors that the CLI turns into one clear line and a non-zero exit (never a traceback)."""


class OsteoAIError(Exception):
    """Base class: the message is meant for the user."""


class InputError(OsteoAIError):
    """The input cannot be used: wrong modality, unreadable, not 3D, no spine..."""


class CancelledError(OsteoAIError):
    """The user cancelled a running job."""
