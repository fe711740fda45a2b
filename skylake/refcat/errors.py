"""Exceptions of reference-catalogue imports; all are :class:`~skylake.errors.LakeError` so the CLI
reports them as usage errors (exit 2) with their message."""

from skylake.errors import LakeError

__all__ = ["RefcatError", "ColumnMapError", "FormatMismatch"]


class RefcatError(LakeError):
    """A reference-catalogue operation cannot go ahead (bad name, existing catalogue, no rows, ...)."""


class ColumnMapError(RefcatError):
    """A column map (pipelines/refcats.toml or a user's ``--columns-map``) is malformed."""


class FormatMismatch(RefcatError):
    """An input file's columns do not fit the format; the message lists the expected names."""
