"""A seeded fuzz test of the receive path against a live ``gazex serve`` (issue 26, item 5).

Malformed PDUs (random bytes, random headers, mutated and oversized association requests,
garbage after admission, stalled headers) and malformed data sets (cut inside an element, a length past the
end, nesting beyond the limit, an item among elements, undefined lengths without items, an
invalid VR, random bytes) are generated from a seed, a bounded number of each.  After every
case the node must still answer a C-ECHO; every connection must be closed within the
timeouts; every malformed data set must get a failure status; no file may be written outside
the spool (nor stay in it); the node's RSS must stay within a bound.

``GAZEX_FUZZ_SEED`` (default 26), ``GAZEX_FUZZ_PDU_CASES`` (160) and ``GAZEX_FUZZ_DATASET_CASES``
(120) change the run; ``GAZEX_FUZZ_REPORT=FILE`` writes the case and outcome counts as JSON
(they are printed too).  The run stops generating after ``GAZEX_FUZZ_SECONDS`` (60) whatever
the counts.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, SecondaryCaptureImageStorage

from tests.receive_support import (
    NO_MODEL,
    SHORT_TIMEOUTS,
    RawInstance,
    association_request,
    connect,
    echo_status,
    implicit_element,
    pdu_header,
    process_stats,
    read_until_closed,
    secondary_capture,
    send_quietly,
    short_serve,
    storage_scu,
    store_raw,
)

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("GAZEX_FUZZ_SEED", "26"))
PDU_CASES = int(os.environ.get("GAZEX_FUZZ_PDU_CASES", "160"))
DATASET_CASES = int(os.environ.get("GAZEX_FUZZ_DATASET_CASES", "120"))
TIME_BUDGET = float(os.environ.get("GAZEX_FUZZ_SECONDS", "60"))
#: stalled cases wait for the admission timeout each: a few are enough
MAX_STALLED = 4
#: the longest a fuzzed connection may stay open (admission or network timeout, plus slack for a busy machine)
CLOSE_BOUND = max(SHORT_TIMEOUTS["admission"], SHORT_TIMEOUTS["network"]) + 6.0
RSS_BOUND_KIB = 64 * 1024

PDU_KINDS = ("random-bytes", "random-header", "mutated-request", "oversized-request", "garbage-after-admission")
DATASET_KINDS = (
    "cut-inside-element",
    "length-past-end",
    "nested-too-deep",
    "item-among-elements",
    "undefined-length-without-items",
    "invalid-vr",
    "random-after-sop-class",
)
FAILURE_STATUSES = range(0xA000, 0xD000)


# -- PDUs ----------------------------------------------------------------------------------


def mutate(rng: random.Random, data: bytes) -> bytes:
    """Flip, cut, extend or re-length a valid PDU."""
    out = bytearray(data)
    how = rng.choice(("flip", "cut", "extend", "length"))
    if how == "flip":
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    elif how == "cut":
        del out[rng.randint(1, len(out) - 1) :]
    elif how == "extend":
        out += rng.randbytes(rng.randint(1, 64))
    else:
        struct.pack_into(">L", out, 2, rng.choice((0, 1, len(out) - 7, len(out) + 1000, rng.randrange(1 << 32))))
    return bytes(out)


def pdu_case(rng: random.Random, kind: str) -> tuple[bytes, bytes]:
    """(bytes before admission, bytes sent after the node's answer to them)."""
    if kind == "random-bytes":
        return rng.randbytes(rng.randint(1, 300)), b""
    if kind == "random-header":
        pdu_type = rng.choice((0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0xFF))
        length = rng.choice((0, 1, 6, 68, 1 << 16, (256 << 10) + 1, 0xFFFFFFFF, rng.randrange(1 << 32)))
        return pdu_header(pdu_type, length) + rng.randbytes(rng.randint(0, 200)), b""
    if kind == "mutated-request":
        return mutate(rng, association_request()), b""
    if kind == "oversized-request":
        return pdu_header(0x01, rng.randint((256 << 10) + 1, 0xFFFFFFFF)) + rng.randbytes(16), b""
    # admitted, then garbage: a P-DATA-TF with broken items, a DIMSE command of random bytes, or random bytes
    after = rng.choice(
        (
            pdu_header(0x04, 7) + struct.pack(">LB", 40, 1) + b"\x03\x00",  # item longer than the PDU
            pdu_header(0x04, 12) + struct.pack(">LB", 8, 1) + b"\x03" + rng.randbytes(7),  # a random command
            pdu_header(0x04, 6) + struct.pack(">LB", 2, 99) + b"\x00",  # an unknown presentation context
            rng.randbytes(rng.randint(1, 200)),
        )
    )
    return association_request(), after


def run_pdu_case(port: int, before: bytes, after: bytes, stall: bool) -> str:
    """Send a case; the node's answer ("accepted", "rejected", "aborted", "closed") once it closed the connection."""
    with connect(port) as sock:
        if not send_quietly(sock, before):
            return "closed while sending"
        if after:
            answer, _ = _read_pdu(sock)
            if answer[:1] == b"\x02":
                send_quietly(sock, after)
        if not stall:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
        answer, closed_after = read_until_closed(sock, CLOSE_BOUND)
    assert closed_after is not None, f"the node kept a fuzzed connection open for {CLOSE_BOUND} s"
    return {b"\x02": "accepted", b"\x03": "rejected", b"\x07": "aborted"}.get(answer[:1], "closed")


def _read_pdu(sock: socket.socket) -> tuple[bytes, bool]:
    sock.settimeout(CLOSE_BOUND)
    try:
        header = sock.recv(6)
        if len(header) < 6:
            return header, True
        (length,) = struct.unpack(">L", header[2:6])
        body = b""
        while len(body) < length:
            chunk = sock.recv(length - len(body))
            if not chunk:
                break
            body += chunk
        return header + body, False
    except OSError:
        return b"", True


# -- data sets -----------------------------------------------------------------------------


def element_offsets(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each top-level element of an implicit VR data set without sequences."""
    offsets = []
    offset = 0
    while offset < len(data):
        (length,) = struct.unpack_from("<I", data, offset + 4)
        offsets.append((offset, offset + 8 + length))
        offset += 8 + length
    return offsets


def explicit(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def dataset_case(rng: random.Random, kind: str) -> tuple[RawInstance, str]:  # noqa: PLR0911 - one per kind
    """A malformed data set and the transfer syntax it is sent in."""
    base = secondary_capture()
    data = base.data
    if kind == "cut-inside-element":
        start, end = rng.choice(element_offsets(data)[1:])  # keep the SOP Class UID whole
        cut = rng.randint(start + 1, end - 1)
        return RawInstance(base.sop_class_uid, base.sop_instance_uid, data[:cut]), ImplicitVRLittleEndian
    if kind == "length-past-end":
        start, _ = rng.choice(element_offsets(data))
        out = bytearray(data)
        struct.pack_into("<I", out, start + 4, len(data) - start - 8 + rng.randint(1, 1 << 20))
        return RawInstance(base.sop_class_uid, base.sop_instance_uid, bytes(out)), ImplicitVRLittleEndian
    if kind == "nested-too-deep":
        inner = implicit_element(0x0040, 0xA160, b"x")
        for _ in range(rng.randint(33, 120)):
            if rng.random() < 0.5:
                item = struct.pack("<HHI", 0xFFFE, 0xE000, len(inner)) + inner
                inner = struct.pack("<HHI", 0x0040, 0xA730, len(item)) + item
            else:
                item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + inner + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
                inner = struct.pack("<HHI", 0x0040, 0xA730, 0xFFFFFFFF) + item + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
        return secondary_capture(inner, base.sop_instance_uid), ImplicitVRLittleEndian
    if kind == "item-among-elements":
        extra = implicit_element(0x0040, 0x0001, b"AE") + struct.pack("<HHI", 0xFFFE, 0xE000, 0)
        return secondary_capture(extra, base.sop_instance_uid), ImplicitVRLittleEndian
    if kind == "undefined-length-without-items":
        extra = struct.pack("<HHI", 0x0040, 0xA160, 0xFFFFFFFF) + implicit_element(0x0040, 0xA168, b"x")
        return secondary_capture(extra, base.sop_instance_uid), ImplicitVRLittleEndian
    if kind == "invalid-vr":
        bad_vr = rng.choice((b"XX", b"\x00\x00", b"sq", b"ZZ", rng.randbytes(2).replace(b"S", b"s")))
        dataset = b"".join(
            [
                explicit(0x0008, 0x0016, b"UI", str(SecondaryCaptureImageStorage).encode() + b"\x00"),
                explicit(
                    0x0008, 0x0018, b"UI", (base.sop_instance_uid + "\x00" * (len(base.sop_instance_uid) % 2)).encode()
                ),
                explicit(0x0008, 0x0060, bad_vr, b"OT"),
            ]
        )
        return RawInstance(base.sop_class_uid, base.sop_instance_uid, dataset), ExplicitVRLittleEndian
    # random bytes after a valid SOP Class UID (a data set without its UIDs cannot be stored either)
    garbage = rng.randbytes(rng.randint(1, 600))
    return RawInstance(base.sop_class_uid, base.sop_instance_uid, data[:34] + garbage), ImplicitVRLittleEndian


def files_outside_spool(root: Path, spool: Path) -> list[Path]:
    """Files under ``root`` that are neither in the spool nor the node's own (database, logs, config)."""
    found = []
    for path in root.rglob("*"):
        if not path.is_file() or spool in path.parents:
            continue
        if path.name.startswith(("gazex", "serve-")) or path.suffix in (".yaml", ".log", ".db", ".db-wal", ".db-shm"):
            continue
        found.append(path)
    return found


def stored_files(spool: Path) -> list[Path]:
    return [path for path in spool.rglob("*") if path.is_file() and not path.name.startswith(".lock")]


# -- the test ------------------------------------------------------------------------------


def test_fuzzed_pdus_and_data_sets_leave_the_node_answering(tmp_path: Path, free_port: Callable[[], int]) -> None:
    rng = random.Random(SEED)
    outcomes: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    started = time.monotonic()
    scratch = tmp_path / "cases"
    scratch.mkdir()
    with short_serve(tmp_path, free_port(), NO_MODEL, max_pending_per_address=16) as serve:
        spool = tmp_path / "data" / "spool"
        pid = serve.process.pid
        assert echo_status(serve.port) == 0x0000
        baseline = process_stats(pid).rss_kib
        peak = baseline
        before = set(files_outside_spool(tmp_path, spool))

        stalled = 0
        pdu_cases = 0
        for _ in range(PDU_CASES):
            if time.monotonic() - started > TIME_BUDGET / 2:
                break
            kind = rng.choice(PDU_KINDS)
            before_bytes, after_bytes = pdu_case(rng, kind)
            stall = stalled < MAX_STALLED and rng.random() < 0.03
            if stall:
                stalled += 1
                before_bytes = before_bytes[: rng.randint(1, 5)]  # inside the header, then silence
                kind, after_bytes = "stalled-header", b""
            kinds[kind] += 1
            outcomes[run_pdu_case(serve.port, before_bytes, after_bytes, stall)] += 1
            assert echo_status(serve.port) == 0x0000, f"the node stopped answering after a {kind} case"
            peak = max(peak, process_stats(pid).rss_kib)
            pdu_cases += 1

        dataset_cases = 0
        assoc = None
        try:
            for _ in range(DATASET_CASES):
                if time.monotonic() - started > TIME_BUDGET:
                    break
                kind = rng.choice(DATASET_KINDS)
                kinds[kind] += 1
                instance, transfer_syntax = dataset_case(rng, kind)
                if assoc is None or not assoc.is_established:
                    assoc = storage_scu().associate("127.0.0.1", serve.port, ae_title="GAZEX")
                    assert assoc.is_established
                status = store_raw(assoc, instance, scratch, transfer_syntax)
                statuses["none" if status is None else f"0x{status:04X}"] += 1
                assert status is None or status in FAILURE_STATUSES, f"a {kind} data set got status 0x{status:04X}"
                assert echo_status(serve.port) == 0x0000, f"the node stopped answering after a {kind} data set"
                peak = max(peak, process_stats(pid).rss_kib)
                dataset_cases += 1
        finally:
            if assoc is not None and assoc.is_established:
                assoc.release()

        assert stored_files(spool) == [], "a malformed instance left a file in the spool"
        assert set(files_outside_spool(tmp_path, spool)) - before - set(scratch.iterdir()) == set()
        elapsed = time.monotonic() - started
    report: dict[str, Any] = {
        "seed": SEED,
        "pdu_cases": pdu_cases,
        "dataset_cases": dataset_cases,
        "seconds": round(elapsed, 1),
        "kinds": dict(sorted(kinds.items())),
        "pdu_outcomes": dict(sorted(outcomes.items())),
        "dataset_statuses": dict(sorted(statuses.items())),
        "rss_kib": {"baseline": baseline, "peak": peak},
    }
    print("fuzz report:", json.dumps(report, indent=1))
    if os.environ.get("GAZEX_FUZZ_REPORT"):
        Path(os.environ["GAZEX_FUZZ_REPORT"]).write_text(json.dumps(report, indent=1), encoding="utf-8")
    assert pdu_cases >= min(PDU_CASES, 40) and dataset_cases >= min(DATASET_CASES, 40), "too few cases ran"
    assert peak - baseline < RSS_BOUND_KIB, f"RSS grew by {(peak - baseline) // 1024} MiB during the fuzz run"
