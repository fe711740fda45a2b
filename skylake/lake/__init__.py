"""The lake on disk: storage primitives, the commit log, the HATS source table and the frames table."""

from skylake.lake.lake import Lake, LakeConfig, Transaction

__all__ = ["Lake", "LakeConfig", "Transaction"]
