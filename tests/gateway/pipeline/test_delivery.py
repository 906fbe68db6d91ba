"""Delivery decisions with an in-memory sender: backoff, dead letter, partial success, independence; and
what a real C-STORE sender records about a destination that never answers (a loopback socket)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from gateway.dicom.echo import echo
from gateway.pipeline.delivery import Deliverer, retry_deliveries
from gateway.pipeline.sender import FakeDestination, FakeSender, StoreSender
from tests.gateway.pipeline.support import Harness
from tests.gateway.pipeline.test_worker import queue_study

TWO_DESTINATIONS = {
    "archive": {"ae_title": "ARCHIVE", "host": "127.0.0.1", "port": 104},
    "backup": {"ae_title": "BACKUP", "host": "127.0.0.1", "port": 105},
}


def deliverer(harness: Harness, sender: FakeSender | None = None) -> Deliverer:
    pipeline = harness.pipeline(sender=sender)
    return Deliverer(
        harness.engine, harness.settings, pipeline.outbox, sender or harness.sender, harness.clock, "d", lambda: 0.0
    )


def prepare(harness: Harness, template: Dataset) -> list[str]:
    """Queue and analyse one study; returns its outputs' SOP Instance UIDs (SR, SEG, GSPS)."""
    queue_study(harness, template)
    pipeline = harness.pipeline()
    pipeline.outbox.prepare()
    assert pipeline.workers[0].run_once() is not None
    return [row.sop_instance_uid for row in harness.rows("SELECT sop_instance_uid FROM outputs ORDER BY id")]


def delivery(harness: Harness, destination: str = "archive") -> object:
    return harness.rows("SELECT * FROM deliveries WHERE destination = :d", d=destination)[0]


def test_every_output_acknowledged_means_delivered(harness: Harness, template: Dataset) -> None:
    uids = prepare(harness, template)
    result = deliverer(harness).run_once()
    assert result is not None and (result.status, result.acknowledged, result.total) == ("delivered", 3, 3)
    assert harness.destination().received == uids
    row = delivery(harness)
    assert row.status == "delivered" and row.delivered_at is not None and row.attempts == 1  # type: ignore[attr-defined]
    assert harness.sender.opened == [
        ("archive", ("1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.11.1"))
    ]
    assert deliverer(harness).run_once() is None


def test_an_unreachable_destination_backs_off_then_is_dead_lettered_and_can_be_retried(
    harness: Harness, template: Dataset
) -> None:
    prepare(harness, template)
    harness.destination().reachable = False
    delays = []
    for attempt in (1, 2, 3):
        result = deliverer(harness).run_once()
        assert result is not None and "cannot connect" in (result.reason or "")
        row = delivery(harness)
        if attempt < 3:
            assert row.status == "pending"  # type: ignore[attr-defined]
            assert deliverer(harness).run_once() is None  # not due before its backoff
            delay = 10 * 2 ** (attempt - 1)
            delays.append(delay)
            harness.clock.advance(delay)
    assert delays == [10, 20]
    assert delivery(harness).status == "dead"  # type: ignore[attr-defined]
    harness.clock.advance(10_000)
    assert deliverer(harness).run_once() is None  # dead stays dead
    harness.destination().reachable = True
    assert retry_deliveries(harness.engine, harness.clock, dead=True) == [1]
    result = deliverer(harness).run_once()
    assert result is not None and result.status == "delivered"
    assert len(harness.destination().received) == 3


def test_after_a_partial_success_only_the_failed_outputs_are_sent_again(harness: Harness, template: Dataset) -> None:
    sr, seg, gsps = prepare(harness, template)
    harness.destination().statuses[seg] = 0xA700  # the archive is out of resources for the SEG
    result = deliverer(harness).run_once()
    assert result is not None and result.status == "pending" and result.acknowledged == 2
    assert f"{seg} refused with status 0xA700" in (result.reason or "")
    items = {
        r.sop_instance_uid: r
        for r in harness.rows(
            "SELECT o.sop_instance_uid, i.status, i.status_code, i.sends FROM delivery_items i "
            "JOIN outputs o ON o.id = i.output_pk"
        )
    }
    assert (items[seg].status, items[seg].status_code) == ("failed", 0xA700)
    assert items[sr].status == items[gsps].status == "acknowledged"
    del harness.destination().statuses[seg]
    harness.clock.advance(10)
    result = deliverer(harness).run_once()
    assert result is not None and result.status == "delivered"
    assert harness.destination().received == [sr, gsps, seg]  # the acknowledged ones never again
    assert harness.sender.opened[-1][1] == ("1.2.840.10008.5.1.4.1.1.66.4",)  # only the SEG's class proposed


def test_a_warning_status_counts_as_acknowledged(harness: Harness, template: Dataset) -> None:
    _, seg, _ = prepare(harness, template)
    harness.destination().statuses[seg] = 0xB000
    result = deliverer(harness).run_once()
    assert result is not None and result.status == "delivered"


def test_an_association_lost_mid_way_keeps_what_was_acknowledged(harness: Harness, template: Dataset) -> None:
    sr, seg, gsps = prepare(harness, template)
    harness.destination().fail_after = 1
    result = deliverer(harness).run_once()
    assert result is not None and result.status == "pending" and result.acknowledged == 1
    harness.destination().fail_after = None
    harness.clock.advance(10)
    assert deliverer(harness).run_once() is not None
    assert harness.destination().received == [sr, seg, gsps]


def test_each_destination_retries_on_its_own(tmp_path: Path, template: Dataset) -> None:
    harness = Harness.create(tmp_path, destinations=TWO_DESTINATIONS)
    try:
        prepare(harness, template)
        harness.destination("backup").reachable = False
        sender = deliverer(harness)
        outcomes = {}
        while (result := sender.run_once()) is not None:
            outcomes[result.delivery_id] = result.status
        assert sorted(outcomes.values()) == ["delivered", "pending"]
        assert delivery(harness, "archive").status == "delivered"  # type: ignore[attr-defined]
        assert len(harness.destination("archive").received) == 3
        for _ in range(2):
            harness.clock.advance(1000)
            sender.run_once()
        assert delivery(harness, "backup").status == "dead"  # type: ignore[attr-defined]
    finally:
        harness.close()


def test_a_destination_removed_from_the_configuration_is_dead_lettered_with_the_reason(
    tmp_path: Path, template: Dataset
) -> None:
    harness = Harness.create(tmp_path, destinations=TWO_DESTINATIONS)
    try:
        prepare(harness, template)
        only_archive = {"archive": harness.settings.destinations["archive"]}
        settings = harness.settings.model_copy(update={"destinations": only_archive})
        pipeline = harness.pipeline(settings=settings)
        sender = Deliverer(harness.engine, settings, pipeline.outbox, harness.sender, harness.clock, "d")
        results = [sender.run_once(), sender.run_once()]
        backup = next(r for r in results if r is not None and r.status == "dead")
        assert "destination 'backup' is no longer configured" in (backup.reason or "")
    finally:
        harness.close()


def test_an_expired_delivery_lease_is_claimed_again_and_nothing_acknowledged_is_resent(
    harness: Harness, template: Dataset
) -> None:
    _, seg, gsps = prepare(harness, template)
    # sender A acknowledges the SR, then dies (its association breaks and it never finishes)
    a = deliverer(harness, FakeSender({"archive": FakeDestination(fail_after=1)}))
    from gateway.pipeline.leases import claim
    from gateway.pipeline.states import DeliveryStatus
    from gateway.pipeline.tables import DELIVERIES

    with harness.engine.begin() as connection:
        claimed = claim(
            connection,
            DELIVERIES,
            waiting=DeliveryStatus.PENDING,
            active=DeliveryStatus.SENDING,
            owner="A",
            now=harness.clock.now(),
            lease_seconds=120,
        )
    assert claimed is not None
    row = delivery(harness)
    a._send(
        row,
        harness.settings.destinations["archive"],
        [
            item
            for item in harness.rows(
                "SELECT i.id, i.status, o.sop_instance_uid, o.sop_class_uid, o.file_path, o.purged_at "
                "FROM delivery_items i JOIN outputs o ON o.id = i.output_pk ORDER BY i.id"
            )
        ],
    )
    assert deliverer(harness).run_once() is None  # still leased
    harness.clock.advance(121)
    result = deliverer(harness).run_once()
    assert result is not None and result.status == "delivered"
    assert harness.destination().received == [seg, gsps]  # B sent only what A had not got acknowledged


def test_a_bug_while_sending_is_recorded_and_retried(harness: Harness, template: Dataset) -> None:
    prepare(harness, template)

    class Broken(FakeSender):
        def open(self, *args: object, **kwargs: object) -> Any:
            raise RuntimeError("a bug")

    result = deliverer(harness, Broken()).run_once()
    assert result is not None and result.status == "pending"
    assert result.reason == "unexpected RuntimeError in the gateway (see the log)"


class SilentPeer:
    """A loopback TCP server that accepts connections and never sends a byte (a hung archive)."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._connections: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-peer", daemon=True)

    def _accept(self) -> None:
        self._server.settimeout(0.1)
        while not self._stop.is_set():
            try:
                connection, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._connections.append(connection)  # kept open, never read from, never answered

    def __enter__(self) -> SilentPeer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for connection in self._connections:
            connection.close()
        self._server.close()

    @property
    def accepted(self) -> int:
        return len(self._connections)


def test_a_destination_that_accepts_and_never_answers_is_recorded_as_timed_out(
    tmp_path: Path, template: Dataset
) -> None:
    with SilentPeer() as peer:
        destinations = {
            "archive": {"ae_title": "ARCHIVE", "host": "127.0.0.1", "port": peer.port, "timeout_seconds": 1}
        }
        harness = Harness.create(tmp_path, destinations=destinations)
        try:
            prepare(harness, template)
            sender = StoreSender()
            outbox = harness.pipeline(sender=sender).outbox
            result = Deliverer(
                harness.engine, harness.settings, outbox, sender, harness.clock, "d", lambda: 0.0
            ).run_once()
            assert peer.accepted >= 1
            row = delivery(harness)
            echoed = echo("127.0.0.1", peer.port, "ARCHIVE", timeout=1)  # what `gazex echo` says about it
        finally:
            harness.close()
    assert result is not None and result.status == "pending"
    assert result.reason == row.last_error  # type: ignore[attr-defined]
    assert result.reason == (
        f"destination archive (ARCHIVE@127.0.0.1:{peer.port}): timed out: no answer to the association request "
        "within 1 s (the peer accepted the connection but sent nothing; is it a DICOM node, and is it overloaded?)"
    )
    assert not echoed.ok and echoed.message.startswith("timed out: no answer to the association request within 1 s")
