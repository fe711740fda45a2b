"""Exceptions that carry a reason meant for people (and for the frames table).

The lake and database errors form one hierarchy under :class:`LakeError`; each class says which exit
code the command line returns for it (``exit_code``): 2 usage error or bad lake, 5 database, 1 a
fault of the machine (disk full). Their messages are one line and name the offending path or value.
"""


class FrameRejected(Exception):
    """A frame cannot be processed; ``reason`` is stored verbatim in the frames table."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class LakeError(Exception):
    """The lake is missing, of an unknown format, or inconsistent in a way skylake will not guess at."""

    exit_code = 2


class LakeFullError(LakeError):
    """The lake's device ran out of space (ENOSPC/EDQUOT) while a batch was written. The lake stays
    consistent: an uncommitted batch is dropped, a committed one is published by the next command."""

    exit_code = 1


class DbError(LakeError):
    """The summary database cannot be reached or used; the lake is untouched."""

    exit_code = 5


class DbUrlError(DbError):
    """The database URL is malformed or names a driver that is not installed (a usage error)."""

    exit_code = 2


class ForeignLakeError(DbError):
    """The summary database mirrors another lake (its recorded ``lake_id`` differs): a usage error,
    not an outage, so retrying cannot help."""

    exit_code = 2
