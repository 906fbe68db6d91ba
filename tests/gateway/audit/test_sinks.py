"""The audit file (append-only, fsynced, 0600, reopened after rotation) and the syslog sender (RFC 5424/5425)."""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.audit import messages as m
from gateway.audit.sinks import BOM, AuditFile, SyslogSender, SyslogTarget, octet_frame, syslog_message
from tests.gateway.audit.collector import Certificates, Collector, make_certificates, server_context
from tests.gateway.audit.support import PATIENT_A, WHEN, assert_valid
from tests.gateway.audit.test_messages import KINDS

# --- the file --------------------------------------------------------------------------------------


def test_the_audit_file_is_created_0600_under_a_new_directory_and_appended_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "nested" / "audit.log"
    audit = AuditFile(path)
    try:
        for kind in sorted(KINDS):
            audit.write(KINDS[kind]())
    finally:
        audit.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert len(lines) - 1 == len(KINDS) == audit.written
    for line in lines[:-1]:
        assert_valid(line)

    # a second writer (a restart) appends, never truncates
    again = AuditFile(path)
    again.write(KINDS["logout"]())
    again.close()
    assert path.read_bytes().startswith(b"\n".join(lines[:-1]))
    assert path.read_bytes().count(b"\n") == len(KINDS) + 1


def test_the_file_is_opened_for_appending_and_fsynced_per_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[int] = []
    synced: list[int] = []
    real_open, real_fsync = os.open, os.fsync

    def spy_open(path: str | os.PathLike[str], flags: int, mode: int = 0o777) -> int:
        opened.append(flags)
        return real_open(path, flags, mode)

    def spy_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "fsync", spy_fsync)
    audit = AuditFile(tmp_path / "audit.log")
    audit.write(KINDS["logout"]())
    audit.write(KINDS["login failed"]())
    audit.close()
    assert opened and all(flags & os.O_APPEND and flags & os.O_CREAT for flags in opened)
    assert not any(flags & os.O_TRUNC for flags in opened)
    assert len(synced) == 2


def test_a_wider_mode_is_narrowed_to_0600(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(b"")
    path.chmod(0o644)
    AuditFile(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_after_rotation_the_file_is_reopened(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    audit = AuditFile(path)
    audit.write(KINDS["login succeeded"]())
    path.rename(tmp_path / "audit.log.1")  # logrotate's default: rename, then the writer goes on
    audit.write(KINDS["logout"]())
    (tmp_path / "audit.log.1").rename(tmp_path / "audit.log.2")
    path.unlink()
    audit.write(KINDS["application stop"]())
    audit.close()
    assert (tmp_path / "audit.log.2").read_bytes().count(b"\n") == 1
    assert b"110121" in path.read_bytes()  # the stop, in a new file at the same path
    assert b"110123" not in path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_multi_line_message_is_refused(tmp_path: Path) -> None:
    audit = AuditFile(tmp_path / "audit.log")
    with pytest.raises(ValueError, match="one line"):
        audit.write(b"<AuditMessage>\n</AuditMessage>")
    audit.close()
    assert (tmp_path / "audit.log").read_bytes() == b""


# --- the syslog message --------------------------------------------------------------------------

HEADER = re.compile(
    rb"^<(?P<pri>\d{1,3})>1 (?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (?P<host>\S+) (?P<app>\S+) "
    rb"(?P<procid>\d+) (?P<msgid>\S+) - \xef\xbb\xbf(?P<msg><AuditMessage>.*</AuditMessage>)$",
    re.DOTALL,
)


@pytest.mark.parametrize(
    ("outcome", "pri"), [(m.SUCCESS, 85), (m.MINOR_FAILURE, 84), (m.SERIOUS_FAILURE, 83), (m.MAJOR_FAILURE, 82)]
)
def test_the_rfc5424_header(outcome: int, pri: int) -> None:
    body = KINDS["logout"]()
    framed = octet_frame(
        syslog_message(body, outcome=outcome, hostname="gw.example.org", app_name="gazex", procid="42", when=WHEN)
    )
    length, _, message = framed.partition(b" ")
    assert int(length) == len(message)
    assert message == (
        f"<{pri}>1 2025-03-04T05:06:07.890000Z gw.example.org gazex 42 DICOM+RFC3881 - ".encode() + BOM + body
    )


def test_header_fields_are_cleaned_and_bounded() -> None:
    message = syslog_message(b"<AuditMessage/>", outcome=0, hostname="", app_name="my app " + "x" * 60, procid="1")
    fields = message.split(b" ")
    assert fields[2] == b"-"  # no hostname: the NILVALUE
    assert fields[3] == b"my_app_" + b"x" * 41  # 48 printable characters, no space


# --- syslog over TLS to a real collector ---------------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def collector(certificates: Certificates) -> Iterator[Collector]:
    server = Collector(context=server_context(certificates))
    yield server
    server.close()


def _sender(port: int, certificates: Certificates, *, queue_size: int = 10_000) -> SyslogSender:
    target = SyslogTarget(host="127.0.0.1", port=port, tls=True, ca_certificates=certificates.ca)
    return SyslogSender(
        target,
        hostname="gw.example.org",
        app_name="gazex",
        backoff_initial=0.05,
        backoff_max=0.2,
        queue_size=queue_size,
    )


def test_messages_reach_a_tls_collector_framed_with_rfc5424_headers(
    collector: Collector, certificates: Certificates
) -> None:
    sender = _sender(collector.port, certificates)
    kinds = sorted(KINDS)
    for kind in kinds:
        sender.write(KINDS[kind](), m.MINOR_FAILURE if kind == "login failed" else m.SUCCESS)
    sender.close(timeout=60)  # a safety limit for a loaded machine, not a speed check
    frames = collector.wait_for(len(kinds))
    assert len(frames) == len(kinds) == sender.sent
    assert sender.dropped == 0
    for kind, frame in zip(kinds, frames, strict=True):
        match = HEADER.match(frame)
        assert match, frame[:120]
        assert int(match["pri"]) == (84 if kind == "login failed" else 85)  # authpriv (10) * 8 + severity
        assert (match["host"], match["app"], match["msgid"]) == (b"gw.example.org", b"gazex", b"DICOM+RFC3881")
        assert int(match["procid"]) == os.getpid()
        assert match["msg"] == KINDS[kind]()
        assert_valid(match["msg"])


def test_mutual_tls_presents_our_client_certificate(certificates: Certificates) -> None:
    server = Collector(context=server_context(certificates, require_client=True))
    try:
        target = SyslogTarget(
            host="127.0.0.1",
            port=server.port,
            ca_certificates=certificates.ca,
            certificate=certificates.client_cert,
            private_key=certificates.client_key,
        )
        sender = SyslogSender(target, hostname="gw", backoff_initial=0.05)
        sender.write(KINDS["logout"]())
        sender.close(timeout=60)
        assert len(server.wait_for(1)) == 1
        peer = server.peer_certificates[0]
        assert peer is not None and peer["subject"] == ((("commonName", "client"),),)
    finally:
        server.close()


def test_an_untrusted_collector_gets_nothing_and_the_loss_is_counted_without_content(
    certificates: Certificates, caplog: pytest.LogCaptureFixture
) -> None:
    server = Collector(context=server_context(certificates))
    try:
        target = SyslogTarget(host="127.0.0.1", port=server.port, ca_certificates=certificates.other_ca)
        sender = SyslogSender(target, hostname="gw", backoff_initial=0.05, backoff_max=0.1)
        with caplog.at_level(logging.INFO, logger="gateway.audit.sinks"):
            sender.write(KINDS["instances received"]())
            server.wait_for_handshake_failures(2)
            sender.close(timeout=0.5)
        assert server.frames == []
        assert sender.sent == 0 and sender.connect_failures >= 2 and sender.dropped == 1
        assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
        assert PATIENT_A not in caplog.text and "AuditMessage" not in caplog.text
    finally:
        server.close()


def test_plain_tcp_when_tls_is_off() -> None:
    server = Collector(context=None)
    try:
        sender = SyslogSender(SyslogTarget(host="127.0.0.1", port=server.port, tls=False), hostname="gw")
        sender.write(KINDS["application start"]())
        sender.close(timeout=60)
        (frame,) = server.wait_for(1)
        assert HEADER.match(frame)
    finally:
        server.close()


def test_collector_down_then_up_the_queue_is_delivered_after_reconnecting(
    certificates: Certificates, free_port: object, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # type: ignore[operator]
    sender = _sender(port, certificates)
    with caplog.at_level(logging.INFO, logger="gateway.audit.sinks"):
        sender.write(KINDS["association accepted"]())
        sender.write(KINDS["instances received"]())
        # nobody listens: the sender keeps the messages and retries with backoff, the caller is not held up
        while sender.connect_failures < 3:
            sender.connected.wait(0.05)
        assert sender.sent == 0
        server = Collector(port, context=server_context(certificates))
        try:
            frames = server.wait_for(2)
            sender.close()
        finally:
            server.close()
    assert [HEADER.match(f)["msg"] for f in frames] == [KINDS["association accepted"](), KINDS["instances received"]()]  # type: ignore[index]
    assert sender.dropped == 0
    assert "unreachable" in caplog.text and PATIENT_A not in caplog.text


def test_a_full_queue_drops_and_counts_without_blocking(
    certificates: Certificates, free_port: object, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # type: ignore[operator]
    sender = _sender(port, certificates, queue_size=2)
    with caplog.at_level(logging.WARNING, logger="gateway.audit.sinks"):
        for _ in range(10):
            sender.write(KINDS["instances received"]())
        sender.close(timeout=0.2)
    # at most one in the sender's hand and two queued; the rest were dropped at once
    assert sender.dropped == 10
    assert sender.sent == 0
    assert "not sent" in caplog.text and PATIENT_A not in caplog.text
