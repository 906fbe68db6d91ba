"""The receive path under an outside test (issue 26, items 1-4), against a live ``gazex serve`` over real sockets:
stalled connections, memory before admission, the log after a protocol error, nested implicit VR sequences."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.receive_support import (
    association_request,
    connect,
    echo_status,
    is_closed_within,
    nested_content,
    pdu_header,
    process_stats,
    read_until_closed,
    secondary_capture,
    send_quietly,
    short_serve,
    storage_scu,
    store_raw,
    wait_until,
)

pytestmark = pytest.mark.integration

#: admission 1.5 s, network 1.5 s (tests.receive_support.SHORT_TIMEOUTS): every wait below is a multiple of it
CLOSE_WITHIN = 6.0


def log_lines(log: str, needle: str) -> int:
    return sum(1 for line in log.splitlines() if needle in line)


# -- item 1: stalled connections -----------------------------------------------------------


def test_a_connection_stalled_inside_a_pdu_header_is_closed(tmp_path: Path, free_port: Callable[[], int]) -> None:
    with short_serve(tmp_path, free_port()) as serve, connect(serve.port) as stalled:
        stalled.sendall(b"\x01\x00\x00")  # 3 bytes of an A-ASSOCIATE-RQ header, then nothing
        started = time.monotonic()
        assert is_closed_within(stalled, CLOSE_WITHIN), "the node kept a connection stalled inside a PDU header"
        assert time.monotonic() - started < CLOSE_WITHIN
        assert echo_status(serve.port) == 0x0000


def test_a_stalled_association_frees_its_slot(tmp_path: Path, free_port: Callable[[], int]) -> None:
    """Three admitted associations stall inside a PDU header; after the network timeout a fourth caller gets in."""
    with short_serve(tmp_path, free_port(), max_associations=3) as serve:
        stalled = []
        for _ in range(3):
            sock = connect(serve.port)
            sock.sendall(association_request())
            answer = sock.recv(6)
            assert answer[:1] == b"\x02", "the node did not accept the association"
            read_until_closed(sock, 0.2)  # the rest of the A-ASSOCIATE-AC
            sock.sendall(b"\x04\x00\x00")  # 3 bytes of a P-DATA-TF header, then nothing
            stalled.append(sock)
        try:
            for sock in stalled:
                assert is_closed_within(sock, CLOSE_WITHIN), "a stalled association was not closed"
            assert wait_until(lambda: echo_status(serve.port) == 0x0000, CLOSE_WITHIN), (
                "a new caller is still kept out after the stalled associations timed out"
            )
        finally:
            for sock in stalled:
                sock.close()


# -- item 2: memory and threads before admission -------------------------------------------


def test_an_association_request_larger_than_the_standard_needs_is_refused_at_once(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    with short_serve(tmp_path, free_port(), timeouts={"acse": 30, "admission": 30}) as serve:
        with connect(serve.port) as sock:
            sock.sendall(pdu_header(0x01, 0x00FFFFF0) + b"\x00" * 16)
            answer, closed_after = read_until_closed(sock, 10)
        assert closed_after is not None and closed_after < 5  # not after the 30 s admission time
        assert answer[:1] == b"\x07"  # an A-ABORT
        assert "exceeds the maximum of 262144" in serve.log()


def test_connections_before_admission_are_capped_per_address(tmp_path: Path, free_port: Callable[[], int]) -> None:
    with short_serve(tmp_path, free_port(), max_pending_per_address=4, timeouts={"admission": 20}) as serve:
        silent = [connect(serve.port) for _ in range(4)]
        try:
            with connect(serve.port) as fifth:
                # at once, not at the 20 s admission timeout (the margin is for a busy machine)
                assert is_closed_within(fifth, CLOSE_WITHIN), "a fifth silent connection from one address was kept"
            assert "connections from 127.0.0.1 are waiting for admission" in serve.log()
        finally:
            for sock in silent:
                sock.close()
        # once they are gone, a caller is admitted again
        assert wait_until(lambda: echo_status(serve.port) == 0x0000, CLOSE_WITHIN)


def test_fifty_connections_before_admission_hold_little_memory_and_are_all_closed(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    """The outside test's attack, 50 times: a header declaring almost 16 MiB, 16 bytes, silence."""
    admission = 8.0  # long enough for all 50 to be open at once on a busy machine
    timeouts = {"acse": admission, "admission": admission, "network": admission}
    with short_serve(
        tmp_path, free_port(), timeouts=timeouts, max_pending_per_address=64, max_pending_connections=64
    ) as serve:
        pid = serve.process.pid
        # short_serve waited for the model: loading it grows the process by some 300 MB, whatever the network does
        assert echo_status(serve.port) == 0x0000
        before = process_stats(pid)
        sockets: list[socket.socket] = []
        try:
            for index in range(50):
                sock = connect(serve.port)
                # half declare almost 16 MiB, half just under the 256 KiB the node allows
                declared = 0x00FFFFF0 if index % 2 else (256 << 10) - 16
                send_quietly(sock, pdu_header(0x01, declared) + b"\x01" * 16)
                sockets.append(sock)
            during = process_stats(pid)
            started = time.monotonic()
            closed = sum(
                is_closed_within(sock, max(0.1, admission + 5 - (time.monotonic() - started))) for sock in sockets
            )
        finally:
            for sock in sockets:
                sock.close()
        print(f"RSS {before.rss_kib} -> {during.rss_kib} KiB, threads {before.threads} -> {during.threads}")
        assert closed == 50
        assert during.rss_kib - before.rss_kib < 32 * 1024, "50 pending connections made the node hold > 32 MiB"
        assert during.threads - before.threads <= 2 * 50 + 4
        assert wait_until(lambda: process_stats(pid).threads <= before.threads + 4, CLOSE_WITHIN)
        assert echo_status(serve.port) == 0x0000


# -- item 3: the log after a protocol error -----------------------------------------------


def test_garbage_after_an_oversized_pdu_is_not_read_and_not_logged(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    with short_serve(tmp_path, free_port()) as serve:
        with connect(serve.port) as sock:
            send_quietly(sock, pdu_header(0x04, 0xFFFFFFF0) + b"\x00" * (2 << 20))
            assert is_closed_within(sock, CLOSE_WITHIN)
        assert echo_status(serve.port) == 0x0000
        log = serve.log()
        assert log_lines(log, "exceeds the maximum") == 1
        assert log_lines(log, "unknown PDU type") == 0, "the node read on after aborting the association"
        assert len(log.splitlines()) < 40


def test_repeated_protocol_errors_from_one_peer_are_rate_limited(tmp_path: Path, free_port: Callable[[], int]) -> None:
    with short_serve(tmp_path, free_port()) as serve:
        for _ in range(30):
            with connect(serve.port) as sock:
                send_quietly(sock, pdu_header(0x00, 0) + b"\x00" * 64)
                assert is_closed_within(sock, CLOSE_WITHIN)
        assert echo_status(serve.port) == 0x0000
        log = serve.log()
    assert log_lines(log, "unknown PDU type 0x00") <= 5
    assert re.search(r"further protocol errors from 127\.0\.0\.1 are counted", log)


# -- item 4: nested sequences in implicit VR ----------------------------------------------


def test_nested_implicit_vr_sequences_are_held_to_the_depth_limit(tmp_path: Path, free_port: Callable[[], int]) -> None:
    with short_serve(tmp_path, free_port()) as serve:
        assoc = storage_scu().associate("127.0.0.1", serve.port, ae_title="GAZEX")
        assert assoc.is_established
        try:
            too_deep = store_raw(assoc, secondary_capture(nested_content(40)), tmp_path)
            within = store_raw(assoc, secondary_capture(nested_content(20)), tmp_path)
        finally:
            assoc.release()
        assert too_deep == 0xC210
        assert within == 0x0000
        assert "nested deeper than 32" in serve.log()


def test_a_stalled_tls_handshake_and_a_stalled_record_are_closed(tmp_path: Path, free_port: Callable[[], int]) -> None:
    """With TLS on, a connection stalled inside its handshake, or inside a TLS record after it, is closed too."""
    import ssl

    from tests.conftest import require_tool
    from tests.ingest_support import make_pki

    pki = make_pki(require_tool("openssl"), tmp_path / "pki")
    tls = {"enabled": True, "certificate": str(pki.server_cert), "private_key": str(pki.server_key)}
    with short_serve(tmp_path, free_port(), tls=tls) as serve:
        with connect(serve.port) as handshake:
            handshake.sendall(b"\x16\x03\x01")  # 3 bytes of a ClientHello record, then nothing
            assert is_closed_within(handshake, CLOSE_WITHIN), "a stalled TLS handshake was kept"
        context = ssl.create_default_context(cafile=str(pki.ca))
        context.check_hostname = False
        with context.wrap_socket(connect(serve.port)) as record:
            record.sendall(b"\x01\x00\x00")  # inside the TLS channel: 3 bytes of a PDU header, then nothing
            started = time.monotonic()
            record.settimeout(CLOSE_WITHIN)
            try:
                closed = record.recv(1) == b""
            except (ssl.SSLError, ConnectionError):
                closed = True
            except TimeoutError:
                closed = False
            assert closed and time.monotonic() - started < CLOSE_WITHIN, "a stalled PDU under TLS was kept"
        assert "closing the connection from 127.0.0.1" in serve.log()
