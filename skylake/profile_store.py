"""The profiles that processed a lake's frames, kept in the lake.

Every ingest stores the resolved profile it used (all sections, as plain JSON) under
``LAKE/_skylake/profiles/<pipeline_version>.json`` in the same commit as its frames, so later stages
(calibrate, maps) know how a frame was processed without ``--pipeline``, even when the profile was
a file that has since moved or changed. Frames record the profile's ``pipeline_version`` (skylake's
pipeline version and the digest of the processing settings); ingesting again with the same
processing but other ``[calibration]`` or ``[maps]`` settings replaces the stored copy: the latest
ingest's settings are what later stages use. ``--pipeline`` overrides them.
"""

from __future__ import annotations

import json
import logging
import re

from skylake.profile import Profile, ProfileError, load_profile, profile_from_dict, profile_to_dict

__all__ = ["PROFILES_DIR", "profile_file", "stage_profile", "stored_profile", "frames_profile", "lake_profile"]


log = logging.getLogger(__name__)

PROFILES_DIR = "_skylake/profiles"


def profile_file(pipeline_version: str) -> str:
    """Lake-relative path of the stored profile of ``pipeline_version``.

    Parameters
    ----------
    pipeline_version : str
        A profile's pipeline version (:attr:`skylake.profile.Profile.pipeline_version`).

    Returns
    -------
    str
        ``_skylake/profiles/<pipeline_version>.json``, characters other than letters, digits and ``._+-``
        replaced by ``_``.
    """
    return f"{PROFILES_DIR}/{re.sub(r'[^A-Za-z0-9._+-]', '_', pipeline_version)}.json"


def stage_profile(tx, profile: Profile) -> None:
    """Stage ``profile`` into transaction ``tx``: published with its commit.

    It is stored as JSON (:func:`skylake.profile.profile_to_dict`) under :func:`profile_file`, replacing
    an earlier copy of the same pipeline version.

    Parameters
    ----------
    tx : skylake.lake.transaction.Transaction
        The open transaction.
    profile : skylake.profile.Profile
        The profile to store.
    """
    tx.stage_file(
        profile_file(profile.pipeline_version), json.dumps(profile_to_dict(profile), indent=1, sort_keys=True).encode()
    )


def stored_profile(lake, pipeline_version: str) -> Profile | None:
    """The profile stored for ``pipeline_version`` (None when the lake has none, e.g. an older lake).

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.
    pipeline_version : str
        The frames' pipeline version.

    Returns
    -------
    skylake.profile.Profile or None
        The stored profile, validated (its source is the stored file), or None when the lake has none.
    """
    rel = profile_file(pipeline_version)
    if not lake.store.exists(rel):
        return None
    return profile_from_dict(json.loads(lake.store.read_bytes(rel)), lake.path(rel))


def frames_profile(lake, name: str, pipeline_version: str | None, override: Profile | str | None = None) -> Profile:
    """The profile for frames ingested as ``name`` / ``pipeline_version``.

    That is ``override`` if given, else the copy stored at ingest, else the built-in profile ``name``.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.
    name : str
        The frames' profile name.
    pipeline_version : str or None
        The frames' pipeline version (None or empty: no stored copy is looked for).
    override : skylake.profile.Profile or str or None
        A profile or a name/path (the command's ``--pipeline``), used instead when given.

    Returns
    -------
    skylake.profile.Profile
        The profile.

    Raises
    ------
    skylake.profile.ProfileError
        When none can be found (nothing stored and no built-in profile ``name``), or ``override`` cannot be
        loaded.
    """
    if isinstance(override, Profile):
        return override
    if override:
        return load_profile(override)
    if pipeline_version:
        stored = stored_profile(lake, pipeline_version)
        if stored is not None:
            return stored
    try:
        return load_profile(name)
    except ProfileError as exc:
        raise ProfileError(
            f"frames of profile {name!r} ({pipeline_version}) have no profile stored in the lake and "
            f"none of that name is built in: {exc}"
        ) from None


def lake_profile(lake) -> Profile | None:
    """The profile an ingest without ``--pipeline`` uses: the one this lake's frames were ingested with.

    Of the stored profiles (:func:`stage_profile`), all of one name: the most recently stored (the latest
    ingest's settings). A lake with none (new, or older than stored profiles) gives None: the caller falls
    back to ``generic``.

    Parameters
    ----------
    lake : skylake.lake.Lake
        The lake.

    Returns
    -------
    skylake.profile.Profile or None
        The profile, or None when the lake stores none.

    Raises
    ------
    ProfileError
        The lake holds frames of several profiles: which one is meant is the user's to say.
    """
    if not lake.store.exists(PROFILES_DIR):
        return None
    by_name: dict[str, list] = {}
    for name in sorted(n for n in lake.store.listdir(PROFILES_DIR) if n.endswith(".json")):
        rel = f"{PROFILES_DIR}/{name}"
        profile = profile_from_dict(json.loads(lake.store.read_bytes(rel)), lake.path(rel))
        by_name.setdefault(profile.name, []).append((lake.store.mtime(rel), profile))
    if len(by_name) > 1:
        raise ProfileError(
            f"lake {lake.url} holds frames of the profiles {', '.join(sorted(by_name))}: say which with --pipeline NAME"
        )
    if not by_name:
        return None
    return max(next(iter(by_name.values())), key=lambda stored: stored[0])[1]
