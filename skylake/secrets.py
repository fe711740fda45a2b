"""Keep database passwords out of every message, log line and report.

A password can reach a message in many forms: the userinfo of a URL
(``postgresql+psycopg://u:secret@host/db``, also percent-encoded), a query parameter
(``?password=secret``; libpq also takes ``sslpassword``), a conninfo string a driver echoes
(``password=secret`` or ``password='se cret'``), ``$PGPASSWORD``, or a line of ``~/.pgpass``
(``$PGPASSFILE``, ``passfile=``). :func:`redact` replaces every secret it has been told about
(:func:`register`) and, whatever the secret, the value of any ``*pass*=``/``*pwd*=`` field and of a
URL's userinfo password. :class:`RedactingFilter` applies it to every log record.

This module imports nothing heavy, so the command line can redact its last error message cheaply.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = [
    "MASK",
    "SECRET_KEY",
    "MIN_FREE_TEXT_SECRET",
    "secrets_of_url",
    "pgpass_secrets",
    "register",
    "redact",
    "RedactingFilter",
    "install_log_filter",
]


MASK = "***"
#: Query/conninfo keys whose values are secrets (libpq: password, sslpassword; others defensively).
SECRET_KEY = re.compile(r"pass|pwd|secret|token", re.I)
#: Secrets shorter than this, learnt from $PGPASSWORD or .pgpass, are not replaced in free text
#: (replacing every "ab" would garble messages; the structural patterns still mask them in place).
MIN_FREE_TEXT_SECRET = 4

_FIELD = re.compile(r"""(?ix)
    (\b[\w.-]*(?:pass|pwd|secret|token)[\w.-]*\s*[=:]\s*)   # password=, sslpassword =, pgpass:, "passwd":
    ( '(?:[^'\\]|\\.)*' | "(?:[^"\\]|\\.)*" | [^\s&;,'"})\]]+ )
""")
_USERINFO = re.compile(r"(://[^/\s:@]*:)[^@\s/]*@")
_lock = threading.Lock()
_secrets: set[str] = set()


def secrets_of_url(url: str) -> set[str]:
    """The secrets written in ``url`` (userinfo password, secret query values), raw and decoded.

    Parameters
    ----------
    url : str
        A database URL, or a string that only looks like one (the userinfo password is found even where
        :func:`urllib.parse.urlsplit` rejects the string, e.g. for a bad port).

    Returns
    -------
    set of str
        Each secret as written and percent-decoded; empty values left out.
    """
    found: set[str] = set()
    try:
        parts = urlsplit(str(url))
    except ValueError:
        parts = None
    if parts is not None:
        netloc = parts.netloc
        if "@" in netloc:
            userinfo = netloc.rsplit("@", 1)[0]
            if ":" in userinfo:
                found.add(userinfo.split(":", 1)[1])
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if SECRET_KEY.search(key):
                found.add(value)
        for raw in re.findall(r"[?&][^=&]*(?:pass|pwd|secret|token)[^=&]*=([^&#]*)", parts.query, re.I):
            found.add(raw)
    m = _USERINFO.search(str(url))  # also in strings urlsplit rejects (a bad port)
    if m:
        found.add(str(url)[m.end(1) : m.end() - 1])
    return {v for s in found for v in (s, unquote(s)) if v}


def pgpass_secrets(path: str | None = None) -> set[str]:
    """Passwords in a libpq password file (``path``, else $PGPASSFILE, else ~/.pgpass); never printed.

    Parameters
    ----------
    path : str or None
        The password file; None: $PGPASSFILE, else ``~/.pgpass``.

    Returns
    -------
    set of str
        The password field of each ``host:port:database:user:password`` line (escapes undone); empty when
        the file cannot be read.
    """
    path = path or os.environ.get("PGPASSFILE") or os.path.expanduser("~/.pgpass")
    out: set[str] = set()
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.rstrip("\n")
                if not line or line.startswith("#"):
                    continue
                fields = re.split(r"(?<!\\):", line, maxsplit=4)
                if len(fields) == 5 and fields[4]:
                    out.add(fields[4].replace("\\:", ":").replace("\\\\", "\\"))
    except OSError:
        pass
    return out


def register(url: str | None = None) -> None:
    """Remember the secrets of ``url``, of $PGPASSWORD and of the password file, for :func:`redact`.

    Also makes sure every log handler redacts them (:func:`install_log_filter`). The password files read
    are the URL's ``passfile=``, $PGPASSFILE and ``~/.pgpass``.

    Parameters
    ----------
    url : str or None
        A database URL whose secrets are remembered too.
    """
    found = secrets_of_url(url) if url else set()
    if os.environ.get("PGPASSWORD"):
        found.add(os.environ["PGPASSWORD"])
    m = re.search(r"[?&]passfile=([^&#]*)", str(url or ""))
    for path in {unquote(m.group(1)) if m else None, os.environ.get("PGPASSFILE"), os.path.expanduser("~/.pgpass")}:
        if path:
            found |= pgpass_secrets(path)
    with _lock:
        _secrets.update(s for s in found if s)
    install_log_filter()


def redact(text: str, *extra: str) -> str:
    """``text`` with every known secret (and ``extra`` ones) and every password field masked.

    Known secrets shorter than :data:`MIN_FREE_TEXT_SECRET` are not replaced in free text; the value of any
    ``*pass*=``/``*pwd*=`` field and a URL's userinfo password are masked whatever they are.

    Parameters
    ----------
    text : str
        The text to show.
    *extra : str
        More secrets to mask in this text only.

    Returns
    -------
    str
        ``text`` with the secrets replaced by ``***``.
    """
    text = str(text)
    with _lock:
        known = set(_secrets)
    short = {s for s in known if len(s) < MIN_FREE_TEXT_SECRET}
    for secret in sorted((known - short) | {e for e in extra if e}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _FIELD.sub(lambda m: m.group(1) + MASK, text)
    return _USERINFO.sub(lambda m: m.group(1) + MASK + "@", text)


class RedactingFilter(logging.Filter):
    """Redacts a record's message (arguments merged in) and its traceback text."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place.

        Parameters
        ----------
        record : logging.LogRecord
            The record; its message becomes the redacted message with its arguments merged in, and its
            traceback and stack texts are redacted.

        Returns
        -------
        bool
            Always True: every record is logged (one whose arguments do not format is left unchanged, for
            the handler).
        """
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not format: leave it to the handler
            return True
        record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()


def install_log_filter() -> None:
    """Attach the redacting filter to every handler of the root logger (and to logging's last resort)."""
    handlers = list(logging.getLogger().handlers)
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
