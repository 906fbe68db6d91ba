"""The audit trail as a table: the last messages of the append-only audit file, newest first.

The file holds one DICOM audit message (PS3.15 A.5, XML) per line.  Only what identifies the
event is shown: time, event, outcome, the requesting user or AE title, and its address.  The
participant objects (which may carry a Patient ID) are not shown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

OUTCOMES = {"0": "success", "4": "minor failure", "8": "serious failure", "12": "major failure"}
_BLOCK = 65536


@dataclass(frozen=True)
class AuditRow:
    time: str
    event: str
    outcome: str
    user: str
    address: str
    detail: str


def last_lines(path: Path, count: int) -> list[bytes]:
    """The last ``count`` non-empty lines of a file, oldest first, read backwards in blocks."""
    if count <= 0:
        return []
    with path.open("rb") as handle:
        position = handle.seek(0, os.SEEK_END)
        data = b""
        while position > 0 and data.count(b"\n") <= count:
            step = min(_BLOCK, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    lines = [line for line in data.split(b"\n") if line.strip()]
    if position > 0:
        lines = lines[1:]  # the first may be cut
    return lines[-count:]


def _meaning(element: ET.Element | None) -> str:
    if element is None:
        return ""
    return element.get("originalText") or element.get("csd-code") or ""


def parse_message(line: bytes) -> AuditRow:
    """One audit message as a row; a line that is not one becomes a row that says so."""
    try:
        message = ET.fromstring(line)  # noqa: S314 - our own append-only file, one message per line
    except ET.ParseError as exc:
        return AuditRow("", "(unreadable line)", "", "", "", str(exc))
    event = message.find("EventIdentification")
    if message.tag != "AuditMessage" or event is None:
        return AuditRow("", "(not an audit message)", "", "", "", message.tag)
    names = [_meaning(event.find("EventID"))]
    names += [_meaning(code) for code in event.findall("EventTypeCode")]
    participants = message.findall("ActiveParticipant")
    requestor = next((p for p in participants if p.get("UserIsRequestor") == "true"), None)
    who = requestor if requestor is not None else (participants[0] if participants else None)
    addressed = who if who is not None and who.get("NetworkAccessPointID") else None
    if addressed is None:
        addressed = next((p for p in participants if p.get("NetworkAccessPointID")), None)
    description = event.find("EventOutcomeDescription")
    return AuditRow(
        time=event.get("EventDateTime", ""),
        event=": ".join(name for name in names if name),
        outcome=OUTCOMES.get(event.get("EventOutcomeIndicator", ""), event.get("EventOutcomeIndicator", "")),
        user=(who.get("UserName") or who.get("UserID") or "") if who is not None else "",
        address=addressed.get("NetworkAccessPointID", "") if addressed is not None else "",
        detail=(description.text or "") if description is not None else "",
    )


def audit_rows(path: Path, count: int) -> list[AuditRow]:
    """The last ``count`` messages, newest first; empty when there is no audit file (yet)."""
    try:
        lines = last_lines(path, count)
    except FileNotFoundError:
        return []
    return [parse_message(line) for line in reversed(lines)]
