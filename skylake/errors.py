"""Exceptions that carry a reason meant for people (and for the frames table)."""


class FrameRejected(Exception):
    """A frame cannot be processed; ``reason`` is stored verbatim in the frames table."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class LakeError(Exception):
    """The lake is missing, of an unknown format, or inconsistent in a way skylake will not guess at."""


class DbError(LakeError):
    """The summary database cannot be reached or used; the lake is untouched."""
