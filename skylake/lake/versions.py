"""One live version per file: which frame rows products use when a file was ingested more than once.

``skylake ingest --keep-versions`` keeps a file's earlier rows beside a new profile's or pipeline
version's; each version is a frame of its own (its own sources and calibrations). Products that
combine frames (maps, light curves) use one version per file and HDU: the latest ingested (the
highest ``frame_id``), so no star is counted twice.
"""

from __future__ import annotations

import pandas as pd

__all__ = ["FILE_KEY", "latest_versions"]


#: Frame columns that identify a file's image, whatever processed it.
FILE_KEY = ["content_hash", "hdu"]


def latest_versions(frames: pd.DataFrame) -> pd.DataFrame:
    """The frame rows that are the latest version of their file and HDU.

    Parameters
    ----------
    frames : pandas.DataFrame
        Frame rows with ``frame_id``, ``content_hash`` and ``hdu``.

    Returns
    -------
    pandas.DataFrame
        The latest row of each file and HDU; rows without a content hash (unreadable files) as they are.
    """
    if frames.empty:
        return frames
    known = frames["content_hash"].fillna("") != ""
    latest = frames[known].sort_values("frame_id").drop_duplicates(FILE_KEY, keep="last")
    return pd.concat([latest, frames[~known]]).sort_index()
