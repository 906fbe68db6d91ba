"""The C-STORE sender's guard against pynetdicom's reactor taking a response meant for the sender."""

from __future__ import annotations

import io
import queue
from types import SimpleNamespace
from typing import Any

from pynetdicom.dimse_primitives import C_STORE

from gateway.pipeline.sender import keep_responses


def test_a_response_the_reactor_takes_is_given_back_and_requests_are_still_served() -> None:
    served: list[Any] = []
    assoc: Any = SimpleNamespace(
        dimse=SimpleNamespace(msg_queue=queue.Queue()), _serve_request=lambda msg, cx: served.append(msg)
    )
    keep_responses(assoc)
    response = C_STORE()
    response.MessageIDBeingRespondedTo = 1
    response.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.34"
    response.AffectedSOPInstanceUID = "1.2.3"
    response.Status = 0x0000
    assoc._serve_request(response, 3)
    assert assoc.dimse.msg_queue.get_nowait() == (3, response) and served == []
    request = C_STORE()
    request.MessageID = 7
    request.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    request.AffectedSOPInstanceUID = "1.2.4"
    request.Priority = 2
    request.DataSet = io.BytesIO(b"\x00\x00")
    assoc._serve_request(request, 1)
    assert served == [request] and assoc.dimse.msg_queue.empty()
