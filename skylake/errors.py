"""Exceptions that carry a reason meant for people (and for the frames table), and their exit codes.

They come with the one table from exception to the command line's exit code. Every error a command
reports is a :class:`SkylakeError`; its class says the exit code (``exit_code``), and :func:`command`
(every sub-command's wrapper) and :func:`skylake.cli.main` print it as one line,
``skylake: error: <reason>``, with passwords masked. The codes, the same for every command (the
README's table):

====  ======================================================================================
0     done
1     an unexpected failure (a bug: the traceback is printed), or the disk is full
2     a usage or configuration error, nothing written (:class:`UsageError`, :class:`LakeError`)
3     some inputs were not ok, the rest were done (ingest: frames rejected; calibrate: frames
      not ok; lightcurve: nothing at that position)
4     nothing was done (ingest: nothing ingested; maps: nothing to map; camera fit: the fit failed)
5     the summary database cannot be reached or written (:class:`DbError`; the lake is untouched)
130   interrupted (Ctrl-C); the lake is consistent
141   the reader of the output stopped reading (``skylake status LAKE | head``): the output ends quietly,
      as a Unix tool's does on SIGPIPE (128 + 13)
====  ======================================================================================
"""

from __future__ import annotations

import functools
import re
import sys
from collections import Counter

__all__ = [
    "EXIT_OK",
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "EXIT_PARTIAL",
    "EXIT_NOTHING",
    "EXIT_DATABASE",
    "EXIT_INTERRUPTED",
    "EXIT_BROKEN_PIPE",
    "SkylakeError",
    "UsageError",
    "NightError",
    "FrameRejected",
    "LakeError",
    "LakeFullError",
    "PublishBlocked",
    "DbError",
    "DbUrlError",
    "ForeignLakeError",
    "exit_code",
    "report",
    "report_object_store",
    "command",
    "reason_kind",
    "count_kinds",
]


EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_PARTIAL, EXIT_NOTHING, EXIT_DATABASE, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130
EXIT_BROKEN_PIPE = 141


class SkylakeError(Exception):
    """An error whose message is meant for people: one line naming the offending path or value."""

    exit_code = EXIT_USAGE


class UsageError(SkylakeError):
    """A command's arguments or inputs cannot work (no such file, a profile without a section, ...)."""


class NightError(UsageError, ValueError):
    """A night or date option that is not a date YYYY-MM-DD (``--night 2024/01/01``): the caller's mistake."""


class FrameRejected(Exception):
    """A frame cannot be processed; ``reason`` is stored verbatim in the frames table.

    Parameters
    ----------
    reason : str
        Why the frame cannot be processed (also the exception's message).

    Attributes
    ----------
    reason : str
        The reason, stored verbatim in the frames table.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class LakeError(SkylakeError):
    """The lake is missing, of an unknown format, or inconsistent in a way skylake will not guess at."""

    exit_code = EXIT_USAGE


class LakeFullError(LakeError):
    """The lake's device ran out of space (ENOSPC/EDQUOT) while a batch was written.

    The lake stays consistent: an uncommitted batch is dropped, a committed one is published by the next
    command.
    """

    exit_code = EXIT_FAILURE


class PublishBlocked(LakeError):
    """A committed batch cannot be made live: something in the lake is in its way (a file where a directory goes,
    a permission). Readers read the lake as published; writers wait until it is moved."""

    exit_code = EXIT_FAILURE


class DbError(LakeError):
    """The summary database cannot be reached or used; the lake is untouched."""

    exit_code = EXIT_DATABASE


class DbUrlError(DbError):
    """The database URL is malformed or names a driver that is not installed (a usage error)."""

    exit_code = EXIT_USAGE


class ForeignLakeError(DbError):
    """The summary database mirrors another lake (its recorded ``lake_id`` differs).

    A usage error, not an outage, so retrying cannot help.
    """

    exit_code = EXIT_USAGE


def exit_code(exc: BaseException) -> int:
    """The command line's exit code for ``exc`` (see the module docstring).

    Parameters
    ----------
    exc : BaseException
        The error a command raised.

    Returns
    -------
    int
        The :class:`SkylakeError`'s own ``exit_code``; :data:`EXIT_USAGE` for a missing file,
        :data:`EXIT_INTERRUPTED` for Ctrl-C, :data:`EXIT_FAILURE` for anything else.
    """
    if isinstance(exc, SkylakeError):
        return exc.exit_code
    if isinstance(exc, FileNotFoundError):
        return EXIT_USAGE
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_FAILURE


def report(exc: BaseException) -> int:
    """Print ``exc`` as the one-line ``skylake: error: ...`` (passwords masked); return its exit code.

    The message goes to standard error with its whitespace collapsed to single spaces.

    Parameters
    ----------
    exc : BaseException
        The error to report.

    Returns
    -------
    int
        Its exit code (:func:`exit_code`).
    """
    from skylake.secrets import redact

    print(f"skylake: error: {redact(' '.join(str(exc).split()))}", file=sys.stderr)
    return exit_code(exc)


def _from_object_store(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the S3 client (botocore; s3fs passes its connection and credential errors on)."""
    while exc is not None:
        if type(exc).__module__.split(".")[0] in ("botocore", "aiobotocore"):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def report_object_store(exc: BaseException) -> int:
    """Print an S3 client's error as one line, not a traceback, and return a configuration error's exit code.

    An S3 client's error is an unreachable endpoint or missing or refused credentials; any other error is
    raised again.

    Parameters
    ----------
    exc : BaseException
        The error a command raised.

    Returns
    -------
    int
        :data:`EXIT_USAGE`.

    Raises
    ------
    BaseException
        ``exc`` itself, when it does not come from the S3 client (botocore).
    """
    if not _from_object_store(exc):
        raise exc
    return report(LakeError(f"the object store refused or did not answer: {type(exc).__name__}: {exc}"))


def command(func):
    """Wrap a sub-command's ``func(args) -> int`` so that its errors become one line and an exit code.

    A :class:`SkylakeError` or a missing file is printed as one line and becomes its exit code (also when
    the function is called outside :func:`skylake.cli.main`); an S3 client's error likewise
    (:func:`report_object_store`).

    Parameters
    ----------
    func : callable
        The sub-command, ``func(args) -> int``.

    Returns
    -------
    callable
        The wrapped sub-command, with the same name and docstring.
    """

    @functools.wraps(func)
    def wrapper(args) -> int:
        """Run the sub-command, reporting its errors as one line.

        Parameters
        ----------
        args : argparse.Namespace
            The parsed command line.

        Returns
        -------
        int
            The sub-command's exit code, or that of the error it raised.
        """
        try:
            return func(args)
        except (SkylakeError, FileNotFoundError) as exc:
            return report(exc)
        except Exception as exc:
            return report_object_store(exc)

    return wrapper


# -- counting outcomes by kind (the last line of a command) ----------------------------------------------------
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"(?<![A-Za-z_])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![A-Za-z_])")
_BRACKETED = re.compile(r"\s*(?:\([^()\[\]]*\)|\[[^()\[\]]*\])")  # an innermost (...) or [...]


def reason_kind(reason: str) -> str:
    """A frame's reason without its values, so that reasons of one kind count together.

    The kind is the step a reason names before its first ': ' (``plate solving failed: ...``), else the
    sentence with quoted values and numbers as '...' and bracketed details left out.

    Parameters
    ----------
    reason : str or None
        The frame's reason.

    Returns
    -------
    str
        The reason's kind, at most 80 characters; ``no reason given`` for an empty reason.

    Examples
    --------
    >>> reason_kind("header OBJCTRA = '21 44 16' (the pointing RA) is not a number")
    'header OBJCTRA = ... is not a number'
    >>> reason_kind("plate solving failed: only 3 stars match within 2.0 px")
    'plate solving failed'
    >>> reason_kind("no observation time in the header (looked for ['DATE-OBS'], ['JD'])")
    'no observation time in the header'
    """
    text = " ".join(str(reason or "").split())
    if not text:
        return "no reason given"
    head, sep, _ = text.partition(": ")
    if sep and len(head) <= 48:
        text = head
    text = re.sub(r"\.\.\.(?:\s*[-/:,x]?\s*\.\.\.)+", "...", _NUMBER.sub("...", _QUOTED.sub("...", text)))  # a range
    while _BRACKETED.search(text):  # nested brackets: innermost first
        text = _BRACKETED.sub("", text)
    text = text.strip()
    return text if len(text) <= 80 else text[:77] + "..."


def count_kinds(reasons) -> str:
    """Count reasons by :func:`reason_kind`, most frequent first.

    Parameters
    ----------
    reasons : iterable of str
        The frames' reasons.

    Returns
    -------
    str
        The counts, e.g. ``"7 plate solving failed, 3 no observation time in the header"`` (ties in
        alphabetical order of the kind).
    """
    counts = Counter(reason_kind(r) for r in reasons)
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
