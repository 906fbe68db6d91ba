"""Deterministic UIDs: the same analysis encoded again gets the same UIDs.

Every UID we create is derived from a key made of

- the Study Instance UID and the sorted SOP Instance UIDs of the analysed sources,
- the model identity (name, version, checkpoint SHA-256, backend),
- the analysis id the caller gives,
- the installation id, when the caller gives one: an id the gateway generates once and keeps
  with its data (the database), so that two installations, or one whose database was rebuilt,
  never issue the same UID for different content, and
- the role of the UID inside the outputs (e.g. ``("seg", "instance", <source SOP UID>)``).

With no UID root, a UID is ``2.25.<n>`` (PS3.5 B.2: a UID derived from a UUID), where the UUID
is a name-based (version 5, SHA-1) UUID of the key.  With a site's UID root (``root``), it is
``<root>.<n>``, where ``n`` is the decimal SHA-256 of the key cut to the digits that fit in 64
characters (at least :data:`MIN_SUFFIX_DIGITS`).

So re-encoding one analysis on one installation reproduces every UID, while a new analysis id
(a re-analysis), a new checkpoint, a new set of sources or another installation gives new ones.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable

from inference.results import ModelIdentity

#: Namespace of our name-based UUIDs (a fixed random UUID; never change it, or UIDs change).
GAZEX_UID_NAMESPACE = uuid.UUID("6f1b0d52-8f0e-4c49-9a53-2b8e6f4d7a10")

#: The fewest digits a UID under a site's root gets after the root (about 80 bits of the hash).
MIN_SUFFIX_DIGITS = 24

#: The longest UID root we accept: root + "." + :data:`MIN_SUFFIX_DIGITS` digits fit in 64 characters.
MAX_UID_ROOT_LENGTH = 64 - 1 - MIN_SUFFIX_DIGITS

_SEPARATOR = "\x1f"  # unit separator: cannot occur in UIDs or in our role names
_COMPONENT = re.compile(r"0|[1-9][0-9]*")


def check_uid_root(root: str) -> str:
    """``root`` if it can prefix our UIDs (PS3.5 9.1); otherwise raises ``ValueError`` saying why."""
    if not root:
        raise ValueError("a UID root must not be empty")
    if len(root) > MAX_UID_ROOT_LENGTH:
        raise ValueError(
            f"UID root {root!r} is {len(root)} characters; at most {MAX_UID_ROOT_LENGTH} leave room for "
            f"the {MIN_SUFFIX_DIGITS} digits each UID adds within DICOM's 64"
        )
    components = root.split(".")
    for component in components:
        if not _COMPONENT.fullmatch(component):
            raise ValueError(
                f"UID root {root!r}: component {component!r} is not a number without leading zeros "
                "(a UID is digits separated by single dots, e.g. 1.2.826.0.1.3680043.10.1234)"
            )
    if components[0] not in ("0", "1", "2"):
        raise ValueError(f"UID root {root!r} must start with 0, 1 or 2 (an ISO/ITU-T arc)")
    return root


class UidFactory:
    """Makes the UIDs of one encoding; see the module docstring for the derivation."""

    def __init__(
        self,
        study_instance_uid: str,
        source_sop_instance_uids: Iterable[str],
        model: ModelIdentity,
        analysis_id: str,
        *,
        installation_id: str = "",
        root: str | None = None,
    ) -> None:
        if not analysis_id:
            raise ValueError('Argument "analysis_id" must be a non-empty string.')
        parts = [
            "gazex-outputs-v1",
            study_instance_uid,
            *sorted(source_sop_instance_uids),
            model.name,
            model.version,
            model.checkpoint_sha256,
            model.backend,
            analysis_id,
        ]
        if installation_id:
            parts.append(f"installation={installation_id}")
        self._base = _SEPARATOR.join(parts)
        self._installation_id = installation_id
        self._root = check_uid_root(root) if root else None

    def uid(self, *role: str) -> str:
        """The UID for ``role``, e.g. ``uid("sr", "series")``; at most 44 characters without a root, 64 with one."""
        if not role:
            raise ValueError("uid() needs at least one role part")
        return _derive(self._base + _SEPARATOR + _SEPARATOR.join(role), self._root)

    def device_uid(self, model: ModelIdentity) -> str:
        """The model as a device on this installation (see :func:`model_device_uid`)."""
        return model_device_uid(model, installation_id=self._installation_id, root=self._root)


def model_device_uid(model: ModelIdentity, *, installation_id: str = "", root: str | None = None) -> str:
    """A UID for the model as a device (Device Observer UID, Contributing Equipment Device UID).

    It depends on the model identity (and the installation, when given) only, so every analysis by
    one checkpoint on one installation shares it.
    """
    parts = ["gazex-device-v1", model.name, model.version, model.checkpoint_sha256, model.backend]
    if installation_id:
        parts.append(f"installation={installation_id}")
    return _derive(_SEPARATOR.join(parts), check_uid_root(root) if root else None)


def _derive(name: str, root: str | None) -> str:
    if root is None:
        return f"2.25.{uuid.uuid5(GAZEX_UID_NAMESPACE, name).int}"
    digits = 64 - len(root) - 1
    number = int.from_bytes(hashlib.sha256(name.encode()).digest(), "big")
    lowest = 10 ** (digits - 1)  # exactly ``digits`` digits: no leading zero
    return f"{root}.{lowest + number % (9 * lowest)}"
