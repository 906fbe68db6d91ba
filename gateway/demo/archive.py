"""A small local archive (pynetdicom Storage SCP) that receives results: for ``gazex demo`` and tests.

It accepts every standard storage SOP class, writes each instance it receives to a folder
(when given one) and records every C-STORE, repeats included, so a test can check that each
output arrived exactly once.  It can answer chosen SOP Instance UIDs with a failure status.
"""

from __future__ import annotations

import ssl
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, StoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from gateway.spool import safe_uid_component


@dataclass(frozen=True)
class Received:
    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    calling_ae_title: str
    path: Path | None


class RecordingArchive:
    """``with RecordingArchive(port=...) as archive:`` serves on 127.0.0.1 until the block ends."""

    def __init__(
        self,
        port: int,
        *,
        ae_title: str = "ARCHIVE",
        folder: Path | None = None,
        host: str = "127.0.0.1",
        refuse: dict[str, int] | None = None,
        on_store: Callable[[Dataset], None] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.port = port
        self.ae_title = ae_title
        self.folder = folder
        self.host = host
        self.refuse = dict(refuse or {})  # SOP Instance UID -> status to answer instead of success
        self.on_store = on_store  # called with each data set before it is recorded (tests: to stall a store)
        self.ssl_context = ssl_context  # DICOM TLS on the port (tests of the sender's TLS)
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server: Any = None

    def start(self) -> RecordingArchive:
        ae = AE(ae_title=self.ae_title)
        for context in StoragePresentationContexts:
            if context.abstract_syntax is not None:
                ae.add_supported_context(context.abstract_syntax, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
        ae.add_supported_context(Verification)
        ae.maximum_associations = 50
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        self._server = ae.start_server(
            (self.host, self.port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._on_store)],
            ssl_context=self.ssl_context,
        )
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> RecordingArchive:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _on_store(self, event: Any) -> int:
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        uid = str(dataset.SOPInstanceUID)
        refusal = self.refuse.get(uid)
        if refusal is not None:
            return refusal
        if self.on_store is not None:
            self.on_store(dataset)
        path = None
        if self.folder is not None:
            path = self.folder / f"{safe_uid_component(uid)}.dcm"
            dataset.save_as(path, enforce_file_format=True)
        with self._lock:
            self.received.append(
                Received(
                    sop_instance_uid=uid,
                    sop_class_uid=str(dataset.SOPClassUID),
                    study_instance_uid=str(dataset.get("StudyInstanceUID", "")),
                    calling_ae_title=str(event.assoc.requestor.ae_title).strip(),
                    path=path,
                )
            )
        return 0x0000

    def counts(self) -> Counter[str]:
        """How many times each SOP Instance UID was stored."""
        with self._lock:
            return Counter(item.sop_instance_uid for item in self.received)

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)


def main(argv: list[str] | None = None) -> int:
    """``python -m gateway.demo.archive --port N [--folder DIR]``: serve until SIGTERM (benchmarks)."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description="A local Storage SCP that records what it receives.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ae-title", default="ARCHIVE")
    parser.add_argument("--folder", type=Path, default=None, help="write received instances here")
    args = parser.parse_args(argv)
    stop = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    with RecordingArchive(args.port, ae_title=args.ae_title, folder=args.folder):
        print(f"archive {args.ae_title} listening on 127.0.0.1:{args.port}", flush=True)
        signal.sigwait(stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
