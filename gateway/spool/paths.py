"""Spool paths derived from UIDs that are never trusted as path components (pure functions)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path, PurePosixPath

#: A conformant UID: digits in dot-separated components, at most 64 characters.
_UID = re.compile(r"[0-9]+(?:\.[0-9]+)*")
_MAX_UID_LENGTH = 64
#: How many hex digits of the content hash go into the file name.
HASH_DIGITS_IN_NAME = 16


def safe_uid_component(uid: str) -> str:
    """``uid`` itself when it is a conformant UID, otherwise ``x`` + a SHA-256 of it.

    A conformant UID contains only digits and single dots, so it can never be ``.``, ``..``,
    absolute, or contain a separator.  Anything else (``../../etc``, ``a/b``, NULs, over-long
    values) becomes a fixed-length hex name that cannot collide with a real UID.
    """
    text = uid.rstrip("\x00 ")
    if len(text) <= _MAX_UID_LENGTH and _UID.fullmatch(text):
        return text
    return "x" + hashlib.sha256(uid.encode("utf-8", "surrogateescape")).hexdigest()[:40]


def instance_relpath(
    study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str, content_sha256: str
) -> PurePosixPath:
    """``<study>/<series>/<sop>.<hash16>.dcm``: where an instance's bytes live, relative to the spool root.

    The content hash in the name means a replacement never overwrites the copy the index
    still points at: the new file is complete before the index moves to it.
    """
    if not re.fullmatch(r"[0-9a-f]{64}", content_sha256):
        raise ValueError(f"content_sha256 must be 64 lowercase hex digits, got {content_sha256!r}")
    return PurePosixPath(
        safe_uid_component(study_instance_uid),
        safe_uid_component(series_instance_uid),
        f"{safe_uid_component(sop_instance_uid)}.{content_sha256[:HASH_DIGITS_IN_NAME]}.dcm",
    )


def resolve_in(root: Path, relpath: PurePosixPath | str) -> Path:
    """``root / relpath``, refusing anything that would leave ``root`` (defence in depth)."""
    relative = PurePosixPath(relpath)
    if relative.is_absolute() or any(part in ("", ".", "..") for part in relative.parts) or not relative.parts:
        raise ValueError(f"spool path {str(relpath)!r} must be relative and stay inside the spool")
    path = root.joinpath(*relative.parts)
    if not path.resolve().is_relative_to(root.resolve()):
        raise ValueError(f"spool path {str(relpath)!r} leaves the spool {root}")
    return path
