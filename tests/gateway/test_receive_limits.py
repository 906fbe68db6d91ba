"""The receive path's bounds that need no socket: pending connections per address and in total, the per-peer log."""

from __future__ import annotations

import logging

import pytest

from gateway.config import load_settings
from gateway.dicom.node import DicomNode
from gateway.dicom.receive import PeerLog, PendingConnection, PendingConnections, peer_key


def test_pending_connections_are_capped_per_address_and_in_total() -> None:
    pending = PendingConnections(max_total=3, max_per_address=2, timeout=5)
    first = pending.enter("10.0.0.1")
    second = pending.enter("10.0.0.1")
    assert isinstance(first, PendingConnection) and isinstance(second, PendingConnection)
    refused = pending.enter("10.0.0.1")
    assert refused == "2 connections from 10.0.0.1 are waiting for admission, the maximum per address is 2"
    other = pending.enter("10.0.0.2")
    assert isinstance(other, PendingConnection)
    assert pending.enter("10.0.0.3") == "3 connections are waiting for admission, the maximum is 3"
    pending.leave(first)
    pending.leave(first)  # a second leave changes nothing
    assert pending.count == 2
    assert isinstance(pending.enter("10.0.0.1"), PendingConnection)
    assert pending.count == 3


def test_an_ipv4_mapped_peer_counts_as_its_ipv4_address() -> None:
    assert peer_key("::ffff:10.1.2.3") == "10.1.2.3"
    assert peer_key("fe80::1%eth0") == "fe80::1"


def test_the_admission_timeout_is_the_shorter_of_admission_and_acse() -> None:
    settings = load_settings(overrides={"dicom": {"timeouts": {"acse": 4, "admission": 10}}}, environ={})
    node = object.__new__(DicomNode)
    node.settings = settings.dicom
    assert node.pending_connections().timeout == 4
    node.settings = load_settings(overrides={"dicom": {"timeouts": {"acse": None}}}, environ={}).dicom
    assert node.pending_connections().timeout == 10
    assert node.pending_connections().max_total == 64
    assert node.pending_connections().max_per_address == 8


def test_protocol_errors_are_logged_a_few_times_per_peer_then_counted(caplog: pytest.LogCaptureFixture) -> None:
    log = PeerLog(logging.getLogger("test.peerlog"), burst=3, window=3600)
    with caplog.at_level(logging.WARNING, logger="test.peerlog"):
        logged = [log.warning_from("10.0.0.9", "unknown PDU type 0x%02X from %s", 0, "10.0.0.9") for _ in range(100)]
        assert log.warning_from("10.0.0.8", "another peer") is True  # each peer has its own budget
        log.flush()
    assert logged == [True, True, True] + [False] * 97
    messages = [record.getMessage() for record in caplog.records]
    assert messages[:3] == [
        "unknown PDU type 0x00 from 10.0.0.9",
        "unknown PDU type 0x00 from 10.0.0.9",
        "unknown PDU type 0x00 from 10.0.0.9 (further protocol errors from 10.0.0.9 are counted for 3600 s, "
        "not logged one by one)",
    ]
    assert "97 more protocol error(s) from 10.0.0.9 were not logged" in messages
    assert len(messages) == 5
