"""No PHI in logs: pynetdicom's identifier dumps are off, at every log level."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, _config, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore[attr-defined]

from gateway.cli import main
from gateway.safelog import keep_identifiers_out_of_logs


@pytest.fixture
def identifier_logging() -> Iterator[None]:
    """pynetdicom's defaults (identifiers logged) for the test, restored after it."""
    saved = (_config.LOG_REQUEST_IDENTIFIERS, _config.LOG_RESPONSE_IDENTIFIERS)
    _config.LOG_REQUEST_IDENTIFIERS = _config.LOG_RESPONSE_IDENTIFIERS = True
    try:
        yield
    finally:
        _config.LOG_REQUEST_IDENTIFIERS, _config.LOG_RESPONSE_IDENTIFIERS = saved


def _find(port: int) -> list[int]:
    """A Study Root C-FIND by accession number; the statuses answered."""
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.AccessionNumber = "ACC-SECRET-77"
    query.PatientName = ""
    ae = AE(ae_title="GAZEX")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", port, ae_title="PACS")
    assert assoc.is_established
    try:
        responses = assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind)
        return [int(status.Status) for status, _ in responses]
    finally:
        assoc.release()


def _answer(event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
    match = Dataset()
    match.QueryRetrieveLevel = "STUDY"
    match.AccessionNumber = event.identifier.AccessionNumber
    match.PatientName = "Doe^Jane^Secret"
    yield 0xFF00, match


@pytest.mark.parametrize("silenced", [False, True], ids=["pynetdicom-defaults", "silenced"])
def test_c_find_identifiers_stay_out_of_a_debug_log(
    silenced: bool, identifier_logging: None, free_port: Callable[[], int], caplog: pytest.LogCaptureFixture
) -> None:
    if silenced:
        keep_identifiers_out_of_logs()
    port = free_port()
    scp = AE(ae_title="PACS")
    scp.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    server = scp.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_FIND, _answer)])
    assert server is not None
    try:
        with caplog.at_level(logging.DEBUG):
            assert _find(port) == [0xFF00, 0x0000]
    finally:
        server.shutdown()
    leaked = "ACC-SECRET-77" in caplog.text or "Doe^Jane^Secret" in caplog.text
    # without the switch pynetdicom does write them (so the check below can see a leak)
    assert leaked is not silenced


def test_every_gazex_command_silences_the_identifier_dumps(identifier_logging: None) -> None:
    assert main(["version"]) == 0
    assert _config.LOG_REQUEST_IDENTIFIERS is False
    assert _config.LOG_RESPONSE_IDENTIFIERS is False
