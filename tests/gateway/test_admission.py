"""Admission: allowed callers (AE title + host/IP/CIDR), the called AE title, capacity."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.config import AllowedCaller
from gateway.dicom.admission import (
    PERMANENT,
    TRANSIENT,
    AssociationRequest,
    IPAddress,
    admission,
    matching_caller,
    parse_address,
)

CALLERS = [
    AllowedCaller(ae_title="PACS", host="10.20.0.0/16"),
    AllowedCaller(ae_title="MODALITY", host="modality.hospital.example"),
    AllowedCaller(ae_title="WORKSTATION", host="192.168.1.7"),
    AllowedCaller(ae_title="ANYWHERE"),
    AllowedCaller(ae_title="*", host="::1"),
]


def fake_resolver(name: str) -> set[IPAddress]:
    table = {"modality.hospital.example": {ipaddress.ip_address("172.16.5.5")}}
    return table.get(name, set())


def request(calling: str, address: str, called: str = "GAZEX") -> AssociationRequest:
    return AssociationRequest(calling_ae_title=calling, called_ae_title=called, peer_address=address)


def decide(req: AssociationRequest, **changes: object) -> object:
    arguments: dict[str, object] = {
        "ae_titles": ["GAZEX", "GAZEX_TLS"],
        "require_called_ae_title": True,
        "allowed_callers": CALLERS,
        "reject_unknown_callers": True,
        "active_associations": 0,
        "max_associations": 2,
        "resolve": fake_resolver,
    }
    arguments.update(changes)
    return admission(req, **arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("calling", "address", "allowed"),
    [
        ("PACS", "10.20.3.4", True),
        ("PACS", "10.21.0.1", False),  # outside the network
        ("PACS ", "10.20.3.4", True),  # trailing spaces are not significant
        ("pacs", "10.20.3.4", False),  # AE titles compare exactly
        ("MODALITY", "172.16.5.5", True),  # host name resolved
        ("MODALITY", "172.16.5.6", False),
        ("WORKSTATION", "192.168.1.7", True),
        ("WORKSTATION", "::ffff:192.168.1.7", True),  # IPv4-mapped IPv6
        ("WORKSTATION", "192.168.1.8", False),
        ("ANYWHERE", "203.0.113.9", True),  # no host: any address
        ("SOMEONE", "::1", True),  # '*' matches any AE title
        ("SOMEONE", "127.0.0.1", False),
        ("UNKNOWN", "10.20.3.4", False),
    ],
)
def test_allowed_callers(calling: str, address: str, allowed: bool) -> None:
    assert (matching_caller(request(calling, address), CALLERS, fake_resolver) is not None) is allowed


def test_an_unknown_caller_is_rejected_permanently_as_not_recognised() -> None:
    rejection = decide(request("UNKNOWN", "10.20.3.4"))
    assert rejection is not None
    assert (rejection.result, rejection.source, rejection.diagnostic) == (PERMANENT, 0x01, 0x03)  # type: ignore[attr-defined]
    assert "'UNKNOWN'" in rejection.reason and "10.20.3.4" in rejection.reason  # type: ignore[attr-defined]


def test_unknown_callers_may_be_allowed() -> None:
    assert decide(request("UNKNOWN", "10.20.3.4"), reject_unknown_callers=False) is None


def test_the_called_ae_title_must_be_one_of_ours() -> None:
    assert decide(request("PACS", "10.20.3.4", called="GAZEX_TLS")) is None
    rejection = decide(request("PACS", "10.20.3.4", called="OTHER"))
    assert (rejection.result, rejection.source, rejection.diagnostic) == (PERMANENT, 0x01, 0x07)  # type: ignore[attr-defined]
    assert decide(request("PACS", "10.20.3.4", called="OTHER"), require_called_ae_title=False) is None


def test_beyond_the_maximum_is_rejected_transiently() -> None:
    assert decide(request("PACS", "10.20.3.4"), active_associations=1) is None
    rejection = decide(request("PACS", "10.20.3.4"), active_associations=2)
    assert (rejection.result, rejection.source, rejection.diagnostic) == (TRANSIENT, 0x03, 0x02)  # type: ignore[attr-defined]


def test_an_unknown_caller_is_rejected_permanently_even_when_the_node_is_full() -> None:
    rejection = decide(request("UNKNOWN", "10.20.3.4"), active_associations=5)
    assert rejection.result == PERMANENT  # type: ignore[attr-defined]


def test_addresses_are_normalised() -> None:
    assert parse_address("::ffff:10.0.0.1") == ipaddress.ip_address("10.0.0.1")
    assert parse_address("fe80::1%eth0") == ipaddress.ip_address("fe80::1")
    assert parse_address("not-an-address") is None
