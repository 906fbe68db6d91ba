"""The node in this process against a pynetdicom SCU on loopback: statuses, bytes, associations."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import create_file_meta, encode_file_meta
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.sop_class import ComputedRadiographyImageStorage, Verification  # type: ignore[attr-defined]

from gateway.config import Settings
from gateway.dicom import header as header_module
from gateway.dicom import store as store_module
from gateway.dicom.header import InstanceHeader
from gateway.runtime import GatewayRuntime
from gateway.spool import spool as spool_module
from tests.ingest_support import (
    associate_expecting_rejection,
    dataset_bytes,
    index_rows,
    node_settings,
    partial_files,
    raw_file_sending,
    rejection_of,
    running_node,
    scu,
    sha256,
    small_cr,
    store_all,
    stored_instances,
    write_dataset,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(tmp_path: Path, free_port: Callable[[], int]) -> Settings:
    return node_settings(tmp_path / "data", free_port())


@pytest.fixture
def node(settings: Settings) -> Iterator[GatewayRuntime]:
    with running_node(settings) as runtime:
        yield runtime


def address(runtime: GatewayRuntime) -> tuple[str, int]:
    assert runtime.node is not None
    return runtime.node.address


def test_echo_and_a_store_are_answered(node: GatewayRuntime, settings: Settings, chest_cr: Dataset) -> None:
    ae = scu()
    assoc = ae.associate(*address(node), ae_title="GAZEX")
    assert assoc.is_established
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    dataset = small_cr(chest_cr)
    assert store_all(address(node), [dataset]) == [0x0000]
    row = stored_instances(settings)[dataset.SOPInstanceUID]
    assert (row.calling_ae_title, row.called_ae_title, row.peer_address) == ("TESTSCU", "GAZEX", "127.0.0.1")
    assert (settings.storage.spool_path / row.file_path).is_file()


def test_the_file_holds_the_bytes_exactly_as_sent(
    node: GatewayRuntime, settings: Settings, chest_cr_path: Path
) -> None:
    """The sender's data set bytes, untouched, after the File Meta Information (no re-encoding)."""
    with raw_file_sending():
        assert store_all(address(node), [chest_cr_path]) == [0x0000]
    sent = dataset_bytes(chest_cr_path)
    row = stored_instances(settings)["1.3.6.1.4.1.5962.1.1.9.1.1.20040826185059.5457"]
    stored = settings.storage.spool_path / row.file_path
    assert dataset_bytes(stored) == sent
    assert row.content_sha256 == sha256(sent)
    assert row.file_size == stored.stat().st_size
    meta = pydicom.dcmread(stored, stop_before_pixels=True).file_meta
    assert meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert meta.MediaStorageSOPInstanceUID == row.sop_instance_uid
    # the whole file is what pynetdicom's Event.encoded_dataset() would return for this C-STORE
    expected_meta = create_file_meta(
        sop_class_uid=UID(row.sop_class_uid),
        sop_instance_uid=UID(row.sop_instance_uid),
        transfer_syntax=ExplicitVRLittleEndian,
    )
    assert stored.read_bytes() == b"\x00" * 128 + b"DICM" + encode_file_meta(expected_meta) + sent


def test_the_jpeg2000_copy_is_stored_as_received(
    settings: Settings, node: GatewayRuntime, chest_cr_j2k_path: Path
) -> None:
    ae = scu(transfer_syntaxes=["1.2.840.10008.1.2.4.90"])
    with raw_file_sending():
        assert store_all(address(node), [chest_cr_j2k_path], ae=ae) == [0x0000]
    (row,) = stored_instances(settings).values()
    assert row.transfer_syntax_uid == "1.2.840.10008.1.2.4.90"
    assert dataset_bytes(settings.storage.spool_path / row.file_path) == dataset_bytes(chest_cr_j2k_path)


def test_every_failure_status_and_the_association_goes_on(
    node: GatewayRuntime, settings: Settings, chest_cr: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = small_cr(chest_cr)
    # 0xA900: the data set's SOP Instance UID is not the request's (which the SCU takes from the file meta)
    mismatched_path = write_dataset(small_cr(chest_cr), tmp_path / "mismatched.dcm")
    raw = mismatched_path.read_bytes()
    uid = pydicom.dcmread(mismatched_path).SOPInstanceUID.encode()
    other = uid[:-1] + (b"1" if uid[-1:] != b"1" else b"2")
    mismatched_path.write_bytes(raw.replace(uid, other, 1))  # the first occurrence is in the file meta
    # 0xC210: the data set does not parse (cut in the middle of an element)
    truncated_path = write_dataset(small_cr(chest_cr), tmp_path / "truncated.dcm")
    truncated_path.write_bytes(truncated_path.read_bytes()[:-1000])
    # 0xC212: no Study Instance UID
    unfiled = small_cr(chest_cr)
    del unfiled.StudyInstanceUID
    paths = [
        write_dataset(good, tmp_path / "good.dcm"),
        mismatched_path,
        truncated_path,
        write_dataset(unfiled, tmp_path / "unfiled.dcm"),
    ]
    # 0xC211: an exception inside our handler, for one instance only
    crashing = write_dataset(small_cr(chest_cr), tmp_path / "crashing.dcm")
    real_read_header = header_module.read_header

    def read_header(path: Path, offset: int, transfer_syntax: UID) -> InstanceHeader:
        header = real_read_header(path, offset, transfer_syntax)
        if header.sop_instance_uid == pydicom.dcmread(crashing).SOPInstanceUID:
            raise KeyError("a bug")
        return header

    monkeypatch.setattr(store_module, "read_header", read_header)
    with raw_file_sending():
        statuses = store_all(address(node), [*paths, crashing, good])
    assert statuses == [0x0000, 0xA900, 0xC210, 0xC212, 0xC211, 0x0000]  # the last: a duplicate, acknowledged
    assert set(stored_instances(settings)) == {good.SOPInstanceUID}
    assert partial_files(settings) == []
    assert len(list(settings.storage.spool_path.rglob("*.dcm"))) == 1


def test_below_the_disk_reserve_every_store_is_0xa700(
    tmp_path: Path, free_port: Callable[[], int], chest_cr: Dataset
) -> None:
    settings = node_settings(tmp_path / "data", free_port(), storage={"min_free_disk": "1PB"})
    with running_node(settings) as runtime:
        assert store_all(address(runtime), [small_cr(chest_cr), small_cr(chest_cr)]) == [0xA700, 0xA700]
        assert partial_files(settings) == []
        assert list(settings.storage.spool_path.rglob("*.dcm")) == []
        assert stored_instances(settings) == {}


def test_the_disk_filling_mid_instance_leaves_no_partial_file(
    node: GatewayRuntime, settings: Settings, chest_cr_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert node.spool is not None
    calls = []

    def shrinking(path: Path) -> int:
        calls.append(path)
        return 10**12 if len(calls) == 1 else 0  # room at the start, none a few MB later

    monkeypatch.setattr(node.spool, "_free_bytes", shrinking)
    monkeypatch.setattr(node.spool, "min_free_bytes", 1)
    monkeypatch.setattr(spool_module, "SPACE_CHECK_INTERVAL", 1 << 20)
    with raw_file_sending():
        assert store_all(address(node), [chest_cr_path]) == [0xA700]
    assert partial_files(settings) == []
    assert stored_instances(settings) == {}


def test_a_resent_corrected_instance_replaces_the_old_copy(
    node: GatewayRuntime, settings: Settings, chest_cr: Dataset
) -> None:
    dataset = small_cr(chest_cr)
    assert store_all(address(node), [dataset]) == [0x0000]
    old_path = settings.storage.spool_path / stored_instances(settings)[dataset.SOPInstanceUID].file_path
    dataset.ImageLaterality = "L"
    assert store_all(address(node), [dataset]) == [0x0000]
    row = stored_instances(settings)[dataset.SOPInstanceUID]
    assert row.image_laterality == "L"
    assert not old_path.exists() and (settings.storage.spool_path / row.file_path).exists()
    (replacement,) = index_rows(settings.database_url, "SELECT * FROM instance_replacements")
    assert replacement.sop_instance_uid == dataset.SOPInstanceUID


def test_an_unknown_caller_is_rejected_permanently(tmp_path: Path, free_port: Callable[[], int]) -> None:
    settings = node_settings(
        tmp_path / "data", free_port(), dicom={"allowed_callers": [{"ae_title": "PACS", "host": "127.0.0.1"}]}
    )
    with running_node(settings) as runtime:
        rejected = associate_expecting_rejection(scu("INTRUDER"), *address(runtime), ae_title="GAZEX")
        assert rejected.is_rejected
        assert rejection_of(rejected) == (0x01, 0x01, 0x03)
        allowed = scu("PACS").associate(*address(runtime), ae_title="GAZEX")
        assert allowed.is_established
        allowed.release()


def test_a_wrong_called_ae_title_is_rejected_permanently(node: GatewayRuntime) -> None:
    rejected = associate_expecting_rejection(scu(), *address(node), ae_title="NOT_GAZEX")
    assert rejected.is_rejected
    assert rejection_of(rejected) == (0x01, 0x01, 0x07)


def test_beyond_the_maximum_associations_is_rejected_transiently(tmp_path: Path, free_port: Callable[[], int]) -> None:
    settings = node_settings(tmp_path / "data", free_port(), dicom={"max_associations": 2})
    with running_node(settings) as runtime:
        held = [scu().associate(*address(runtime), ae_title="GAZEX") for _ in range(2)]
        assert all(assoc.is_established for assoc in held)
        rejected = associate_expecting_rejection(scu(), *address(runtime), ae_title="GAZEX")
        assert rejected.is_rejected
        assert rejection_of(rejected) == (0x02, 0x03, 0x02)
        held[0].release()
        deadline = time.monotonic() + 10
        assert runtime.node is not None
        while runtime.node.active_count > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        again = scu().associate(*address(runtime), ae_title="GAZEX")
        assert again.is_established  # a freed slot is usable again
        again.release()
        held[1].release()


def test_a_pdu_larger_than_advertised_aborts_the_association(tmp_path: Path, free_port: Callable[[], int]) -> None:
    settings = node_settings(tmp_path / "data", free_port(), dicom={"max_pdu_size": 16384})
    with running_node(settings) as runtime:
        ae = scu()
        assoc = ae.associate(*address(runtime), ae_title="GAZEX")
        assert assoc.is_established
        assert assoc.acceptor.maximum_length == 16384
        # send a P-DATA-TF PDU far beyond what the node advertised
        assert assoc.dul.socket is not None
        oversized = b"\x04\x00" + (1 << 20).to_bytes(4, "big") + b"\x00" * 64
        assoc.dul.socket.send(oversized)
        deadline = time.monotonic() + 10
        while assoc.is_established and time.monotonic() < deadline:
            time.sleep(0.05)
        assert assoc.is_aborted
        assert partial_files(settings) == []


def test_an_aborted_transfer_leaves_no_partial_file(
    node: GatewayRuntime, settings: Settings, chest_cr_path: Path
) -> None:
    """The sender aborts while the data set streams in: the partial spool file goes away."""
    assoc = scu().associate(*address(node), ae_title="GAZEX")
    assert assoc.is_established
    request = C_STORE()
    request.MessageID = 1
    request.Priority = 2
    request.AffectedSOPClassUID = ComputedRadiographyImageStorage
    request.AffectedSOPInstanceUID = "1.2.3.4.5"
    request.DataSet = BytesIO(dataset_bytes(chest_cr_path))
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    context_id = next(
        cx.context_id for cx in assoc.accepted_contexts if cx.abstract_syntax == request.AffectedSOPClassUID
    )
    assert context_id is not None
    pdus = list(message.encode_msg(context_id, 65536))
    assert assoc.dul.socket is not None
    for pdu in pdus[:20]:  # the command and part of the data set, then the sender gives up
        assoc.dul.socket.send(P_DATA_TF(pdu).encode())
    deadline = time.monotonic() + 10
    while not partial_files(settings) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(partial_files(settings)) == 1  # streaming into the spool as it arrives
    assoc.abort()
    while partial_files(settings) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert partial_files(settings) == []
    assert stored_instances(settings) == {}


def test_verification_from_a_bare_scu(node: GatewayRuntime) -> None:
    ae = AE(ae_title="ECHO")
    ae.add_requested_context(Verification)
    assoc = ae.associate(*address(node), ae_title="GAZEX")
    assert assoc.send_c_echo().Status == 0
    assoc.release()
    assert ComputedRadiographyImageStorage  # the SCU above proposed no storage context at all


def test_negotiation_leaves_the_shared_contexts_untouched(node: GatewayRuntime) -> None:
    """Associations share the node's supported contexts (not copied): each negotiates on its own."""
    for transfer_syntax in ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.5"):
        assoc = scu(transfer_syntaxes=[transfer_syntax]).associate(*address(node), ae_title="GAZEX")
        assert assoc.is_established
        accepted = {cx.abstract_syntax: cx.transfer_syntax[0] for cx in assoc.accepted_contexts}
        assert accepted[ComputedRadiographyImageStorage] == transfer_syntax
        assoc.release()


@pytest.mark.parametrize(
    "name",
    [
        "image_dfl.dcm",  # Deflated Explicit VR Little Endian
        "emri_small_RLE.dcm",  # RLE Lossless
        "emri_small_jpeg_ls_lossless.dcm",  # JPEG-LS Lossless
        "SC_rgb_jpeg_dcmtk.dcm",  # JPEG Baseline
        "emri_small_jpeg_2k_lossless.dcm",  # JPEG 2000 Lossless
    ],
)
def test_compressed_transfer_syntaxes_are_stored_as_received(
    name: str, node: GatewayRuntime, settings: Settings
) -> None:
    from pydicom.data import get_testdata_file

    found = get_testdata_file(name)
    assert found is not None, f"{name} is missing from pydicom's test data"
    path = Path(str(found))
    meta = pydicom.dcmread(path, stop_before_pixels=True)
    ae = scu(sop_classes=[meta.SOPClassUID], transfer_syntaxes=[meta.file_meta.TransferSyntaxUID])
    with raw_file_sending():
        assert store_all(address(node), [path], ae=ae) == [0x0000]
    row = stored_instances(settings)[meta.SOPInstanceUID]
    assert row.transfer_syntax_uid == meta.file_meta.TransferSyntaxUID
    assert dataset_bytes(settings.storage.spool_path / row.file_path) == dataset_bytes(path)


def test_an_idle_association_is_aborted_after_the_network_timeout(tmp_path: Path, free_port: Callable[[], int]) -> None:
    settings = node_settings(tmp_path / "data", free_port(), dicom={"timeouts": {"network": 0.5}})
    with running_node(settings) as runtime:
        assoc = scu().associate(*address(runtime), ae_title="GAZEX")
        assert assoc.is_established
        deadline = time.monotonic() + 10
        while assoc.is_established and time.monotonic() < deadline:
            time.sleep(0.05)
        assert assoc.is_aborted
        assert runtime.node is not None
        while runtime.node.active_count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runtime.node.active_count == 0


def test_a_connection_without_an_association_request_is_closed_after_the_acse_timeout(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    settings = node_settings(tmp_path / "data", free_port(), dicom={"timeouts": {"acse": 0.5}})
    with running_node(settings) as runtime, socket.create_connection(address(runtime), timeout=10) as silent:
        started = time.monotonic()
        assert silent.recv(1) == b""  # the node closes the connection
        assert time.monotonic() - started < 8
