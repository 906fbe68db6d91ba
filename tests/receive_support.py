"""Helpers for the receive-path tests that speak raw bytes to a live ``gazex serve``: the process's
memory and threads, connections that the node should close, hand-made PDUs and data sets."""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
from pynetdicom import AE
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE, ImplementationClassUIDNotification, MaximumLengthNotification
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.ingest_support import ServeProcess, raw_file_sending, serve_config, start_serve, write_config

#: Short timeouts, so stalled connections end within seconds.
SHORT_TIMEOUTS = {"acse": 2.0, "dimse": 5.0, "network": 1.5, "admission": 1.5}


#: The pipeline with the FakeEngine and no study completing during a test: no model in the process.
NO_MODEL: dict[str, dict[str, Any]] = {
    "model": {"path": "fake"},
    "completion": {"quiet_seconds": 3600, "max_wait_seconds": 3600},
}


def start_short_serve(
    directory: Path, port: int, sections: dict[str, dict[str, Any]] | None = None, **dicom: Any
) -> ServeProcess:
    """``gazex serve`` with :data:`SHORT_TIMEOUTS`, the given ``dicom`` settings and other ``sections``."""
    settings = {"timeouts": SHORT_TIMEOUTS, **dicom}
    values = serve_config(directory / "data", port, dicom=settings, **(sections or {}))
    config = write_config(directory / f"gazex-{port}.yaml", values)
    return start_serve(config, port, directory / f"serve-{port}.log")


@contextlib.contextmanager
def short_serve(
    directory: Path, port: int, sections: dict[str, dict[str, Any]] | None = None, **dicom: Any
) -> Iterator[ServeProcess]:
    """A short-timeout ``gazex serve`` whose model is loaded: the import of the model's libraries holds
    the interpreter for seconds, so timings taken while it runs measure the import, not the node."""
    serve = start_short_serve(directory, port, sections, **dicom)
    try:
        wait_for_model(serve)
        yield serve
    finally:
        serve.kill()


def wait_for_model(serve: ServeProcess, timeout: float = 120) -> None:
    """Wait until the pipeline loaded its model (the process's memory grows by some 300 MB until then)."""
    deadline = time.monotonic() + timeout
    while "gateway.pipeline.model: model" not in serve.log():
        if time.monotonic() > deadline or serve.process.poll() is not None:
            raise TimeoutError(f"gazex serve did not load its model within {timeout} s")
        time.sleep(0.2)
    time.sleep(0.5)


@dataclass(frozen=True)
class ProcessStats:
    rss_kib: int
    threads: int


def process_stats(pid: int) -> ProcessStats:
    """Resident memory and thread count of a process, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return ProcessStats(rss_kib=int(fields["VmRSS"][0]), threads=int(fields["Threads"][0]))


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def send_quietly(sock: socket.socket, data: bytes) -> bool:
    """Send ``data``; False when the node closed the connection first."""
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float | None]:
    """What the node sends until it closes the connection, and after how many seconds (None: still open)."""
    started = time.monotonic()
    received = bytearray()
    while True:
        remaining = timeout - (time.monotonic() - started)
        if remaining <= 0:
            return bytes(received), None
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return bytes(received), None
        except ConnectionError:
            return bytes(received), time.monotonic() - started
        if not chunk:
            return bytes(received), time.monotonic() - started
        received += chunk


def is_closed_within(sock: socket.socket, timeout: float) -> bool:
    return read_until_closed(sock, timeout)[1] is not None


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def association_request(
    called_ae_title: str = "GAZEX",
    calling_ae_title: str = "RAWSCU",
    contexts: tuple[tuple[str, tuple[str, ...]], ...] = ((Verification, ("1.2.840.10008.1.2",)),),
) -> bytes:
    """An encoded A-ASSOCIATE-RQ PDU."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = calling_ae_title
    primitive.called_ae_title = called_ae_title
    definitions = []
    for index, (abstract_syntax, transfer_syntaxes) in enumerate(contexts):
        context = build_context(abstract_syntax, list(transfer_syntaxes))
        context.context_id = 2 * index + 1
        definitions.append(context)
    primitive.presentation_context_definition_list = definitions
    maximum = MaximumLengthNotification()
    maximum.maximum_length_received = 16384
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = "1.2.826.0.1.3680043.9.7433.1.1"
    primitive.user_information = [maximum, implementation]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return bytes(pdu.encode())


def pdu_header(pdu_type: int, length: int) -> bytes:
    return struct.pack(">BBL", pdu_type, 0, length)


def echo_status(port: int, calling_ae_title: str = "ECHOSCU") -> int | None:
    """The status of a C-ECHO to the node (None: no association or no answer)."""
    ae = AE(ae_title=calling_ae_title)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    assoc = ae.associate("127.0.0.1", port, ae_title="GAZEX")
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_echo()
        return int(status.Status) if status is not None and "Status" in status else None
    finally:
        if assoc.is_established:
            assoc.release()


# -- data sets in implicit VR little endian, byte by byte ------------------------------------


def implicit_element(group: int, element: int, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00"
    return struct.pack("<HHI", group, element, len(value)) + value


def implicit_sequence(group: int, element: int, items: list[bytes]) -> bytes:
    """A defined-length sequence of defined-length items."""
    body = b"".join(struct.pack("<HHI", 0xFFFE, 0xE000, len(item)) + item for item in items)
    return struct.pack("<HHI", group, element, len(body)) + body


def nested_content(depth: int) -> bytes:
    """(0040,A730) Content Sequence nested ``depth`` deep, every length defined."""
    data = implicit_element(0x0040, 0xA160, b"innermost")
    for _ in range(depth):
        data = implicit_sequence(0x0040, 0xA730, [data])
    return data


@dataclass(frozen=True)
class RawInstance:
    """A data set as bytes (implicit VR little endian) with the UIDs its C-STORE names."""

    sop_class_uid: str
    sop_instance_uid: str
    data: bytes


def secondary_capture(extra: bytes = b"", sop_instance_uid: str | None = None) -> RawInstance:
    """A small Secondary Capture data set (no pixels), ``extra`` elements inserted in tag order before group 0040 ends.

    ``extra`` must hold elements of group 0040 or later sorted after (0020,000E)."""
    uid = sop_instance_uid or str(generate_uid())
    data = b"".join(
        [
            implicit_element(0x0008, 0x0016, SecondaryCaptureImageStorage.encode()),
            implicit_element(0x0008, 0x0018, uid.encode()),
            implicit_element(0x0008, 0x0060, b"OT"),
            implicit_element(0x0010, 0x0020, b"FUZZ-ID"),
            implicit_element(0x0020, 0x000D, str(generate_uid()).encode()),
            implicit_element(0x0020, 0x000E, str(generate_uid()).encode()),
            extra,
        ]
    )
    return RawInstance(str(SecondaryCaptureImageStorage), uid, data)


def store_raw(
    assoc: Any, instance: RawInstance, directory: Path, transfer_syntax: str = ImplicitVRLittleEndian
) -> int | None:
    """C-STORE ``instance``'s bytes exactly as they are over an established pynetdicom association;
    the status, or None when no response came (the association went away)."""
    path = directory / f"{instance.sop_instance_uid[-40:]}.dcm"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(instance.sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(instance.sop_instance_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    with path.open("wb") as fp:
        fp.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(fp, meta, enforce_standard=True)  # type: ignore[arg-type]
        fp.write(instance.data)
    try:
        with raw_file_sending():
            status = assoc.send_c_store(path)
    finally:
        path.unlink()
    return int(status.Status) if status is not None and "Status" in status else None


def storage_scu(calling_ae_title: str = "RAWSCU") -> AE:
    ae = AE(ae_title=calling_ae_title)
    ae.add_requested_context(SecondaryCaptureImageStorage, [ImplicitVRLittleEndian])
    ae.add_requested_context(SecondaryCaptureImageStorage, [ExplicitVRLittleEndian])
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    return ae
