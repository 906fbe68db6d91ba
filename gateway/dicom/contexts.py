"""Which SOP classes and transfer syntaxes the node accepts (pure functions, no I/O)."""

from __future__ import annotations

from collections.abc import Sequence

from pydicom.uid import UID
from pynetdicom import ALL_TRANSFER_SYNTAXES
from pynetdicom.sop_class import _STORAGE_CLASSES

#: Settings value meaning "every storage SOP class pynetdicom knows".
ALL_STORAGE = "all-storage"
#: Settings value meaning "every transfer syntax pydicom knows".
ALL_TRANSFER_SYNTAXES_KEYWORD = "all"

#: keyword -> UID of every standard storage SOP class (CR, DX, SC, ... 170 of them).
STORAGE_SOP_CLASSES: dict[str, UID] = {keyword: UID(uid) for keyword, uid in _STORAGE_CLASSES.items()}
_STORAGE_BY_UID: dict[str, str] = {str(uid): keyword for keyword, uid in STORAGE_SOP_CLASSES.items()}

#: keyword -> UID of every transfer syntax we can accept (stored as received, never transcoded).
TRANSFER_SYNTAXES: dict[str, UID] = {UID(uid).keyword: UID(uid) for uid in ALL_TRANSFER_SYNTAXES}
_TS_BY_UID: dict[str, str] = {str(uid): keyword for keyword, uid in TRANSFER_SYNTAXES.items()}


def resolve_storage_sop_class(value: str) -> str:
    """The UID of a storage SOP class given as UID or keyword; ValueError says what is allowed."""
    text = value.strip()
    if text in STORAGE_SOP_CLASSES:
        return str(STORAGE_SOP_CLASSES[text])
    if text in _STORAGE_BY_UID:
        return text
    raise ValueError(
        f"{value!r} is not a storage SOP class: give a UID or keyword such as "
        "ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation, SecondaryCaptureImageStorage "
        f"(see pynetdicom's storage SOP classes), or {ALL_STORAGE!r}"
    )


def resolve_transfer_syntax(value: str) -> str:
    """The UID of a transfer syntax given as UID or keyword; ValueError says what is allowed."""
    text = value.strip()
    if text in TRANSFER_SYNTAXES:
        return str(TRANSFER_SYNTAXES[text])
    if text in _TS_BY_UID:
        return text
    raise ValueError(
        f"{value!r} is not a transfer syntax we accept: give a UID or keyword from "
        f"{', '.join(sorted(TRANSFER_SYNTAXES))}, or {ALL_TRANSFER_SYNTAXES_KEYWORD!r}"
    )


def storage_sop_classes(value: str | Sequence[str]) -> list[UID]:
    """The SOP class UIDs a settings value stands for."""
    if isinstance(value, str):
        if value != ALL_STORAGE:
            raise ValueError(f"expected {ALL_STORAGE!r} or a list, got {value!r}")
        return list(STORAGE_SOP_CLASSES.values())
    return [UID(resolve_storage_sop_class(item)) for item in value]


def transfer_syntaxes(value: str | Sequence[str]) -> list[UID]:
    """The transfer syntax UIDs a settings value stands for, uncompressed ones first."""
    if isinstance(value, str):
        if value != ALL_TRANSFER_SYNTAXES_KEYWORD:
            raise ValueError(f"expected {ALL_TRANSFER_SYNTAXES_KEYWORD!r} or a list, got {value!r}")
        return [UID(uid) for uid in ALL_TRANSFER_SYNTAXES]
    return [UID(resolve_transfer_syntax(item)) for item in value]
