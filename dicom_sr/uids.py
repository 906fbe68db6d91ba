"""Deterministic UIDs: the same analysis encoded again gets the same UIDs.

Every UID we create is ``2.25.<n>`` (PS3.5 B.2: a UID derived from a UUID), where the UUID is
a name-based (version 5, SHA-1) UUID of a key made of

- the Study Instance UID and the sorted SOP Instance UIDs of the analysed sources,
- the model identity (name, version, checkpoint SHA-256, backend),
- the analysis id the caller gives, and
- the role of the UID inside the outputs (e.g. ``("seg", "instance", <source SOP UID>)``).

So re-encoding one analysis reproduces every UID, while a new analysis id (a re-analysis), a
new checkpoint or a new set of sources gives new ones.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from inference.results import ModelIdentity

#: Namespace of our name-based UUIDs (a fixed random UUID; never change it, or UIDs change).
GAZEX_UID_NAMESPACE = uuid.UUID("6f1b0d52-8f0e-4c49-9a53-2b8e6f4d7a10")

_SEPARATOR = "\x1f"  # unit separator: cannot occur in UIDs or in our role names


class UidFactory:
    """Makes the UIDs of one encoding; see the module docstring for the derivation."""

    def __init__(
        self,
        study_instance_uid: str,
        source_sop_instance_uids: Iterable[str],
        model: ModelIdentity,
        analysis_id: str,
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
        self._base = _SEPARATOR.join(parts)

    def uid(self, *role: str) -> str:
        """The UID for ``role``, e.g. ``uid("sr", "series")``; at most 44 characters."""
        if not role:
            raise ValueError("uid() needs at least one role part")
        name = self._base + _SEPARATOR + _SEPARATOR.join(role)
        return f"2.25.{uuid.uuid5(GAZEX_UID_NAMESPACE, name).int}"


def model_device_uid(model: ModelIdentity) -> str:
    """A UID for the model as a device (Device Observer UID, Contributing Equipment Device UID).

    It depends on the model identity only, so every analysis by one checkpoint shares it.
    """
    name = _SEPARATOR.join(["gazex-device-v1", model.name, model.version, model.checkpoint_sha256, model.backend])
    return f"2.25.{uuid.uuid5(GAZEX_UID_NAMESPACE, name).int}"
