"""pynetdicom's receive path, made fast: C-STORE data streams straight into the spool.

pynetdicom (3.x) reads a PDU 4 KiB at a time, copies it three times on its way to the DIMSE
layer, and keeps every C-STORE data set in memory until the handler runs.  For a 7 MB
radiograph that is ~2,000 ``recv`` calls and ~30 MB of copies per instance, all while
holding the GIL, and the file is only written after the last byte arrived.  This module
replaces three parts of one acceptor association, and nothing else:

* :class:`SpoolingSocket` reads a whole PDU with ``recv_into`` into one buffer, and every read
  is bounded: it gives up when the peer stalls (the network timeout), when the connection is
  past its admission deadline, or when the association is being aborted;
* :class:`SpoolingDUL` slices P-DATA-TF PDUs into presentation data values without copying,
  refuses PDUs longer than the maximum we advertised (and, before admission, anything but an
  A-ASSOCIATE-RQ of at most :data:`MAX_ASSOCIATE_RQ` bytes), and closes the connection after a
  protocol error instead of reading on;
* :class:`SpoolingDIMSE` writes every C-STORE data set fragment to an
  :class:`~gateway.spool.IncomingFile` (which hashes it) as it arrives, so when the last
  fragment lands only the fsync, rename and index remain.

Connections that have not been admitted yet are counted per IP address and in total
(:class:`PendingConnections`) and closed at their admission deadline, so a peer that is not
an allowed caller cannot make the node hold more than a bounded amount of memory and threads.
Protocol errors are logged through :data:`PROTOCOL_LOG`, at most a few per peer a minute.

The handler finds the spooled data set on the request (:func:`spooled_data`).  Everything
else, the state machine, ACSE, service classes and events, is pynetdicom's own.  These
classes follow pynetdicom 3.0's internals (the package pins ``pynetdicom<4``); the
integration tests exercise them with dcmtk and pynetdicom peers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from pydicom.uid import UID
from pynetdicom import evt
from pynetdicom._handlers import (
    standard_dimse_recv_handler,
    standard_dimse_sent_handler,
    standard_pdu_recv_handler,
    standard_pdu_sent_handler,
)
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import C_STORE_RQ, DIMSEMessage
from pynetdicom.dimse_primitives import C_CANCEL
from pynetdicom.dsutils import create_file_meta, encode_file_meta
from pynetdicom.dul import _PDU_TYPES, DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ, P_DATA_TF
from pynetdicom.pdu_items import PresentationDataValueItem
from pynetdicom.pdu_primitives import A_ABORT, A_ASSOCIATE, A_P_ABORT, P_DATA
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer
from pynetdicom.utils import set_timer_resolution

from gateway.dicom.admission import parse_address
from gateway.events import ReceivedInstance
from gateway.safelog import log_unexpected
from gateway.spool import IncomingFile, OutOfSpaceError, Spool

LOGGER = logging.getLogger(__name__)

#: Attribute of a C-STORE request primitive holding its :class:`SpooledData`.
SPOOLED_ATTRIBUTE = "gazex_spooled"
#: How long an idle DUL or association thread sleeps before it looks at its timers again.
IDLE_WAIT = 0.05
#: Largest A-ASSOCIATE-RQ accepted, and the largest PDU of any type but P-DATA-TF.
#: PS3.8 §9.3.2 bounds what a request needs: at most 128 presentation contexts (their IDs are
#: the odd numbers 1-255), every UID at most 64 bytes (PS3.5 §9.1).  128 contexts that each
#: propose 16 transfer syntaxes of the longest UID length take 128 x (8 + 68 + 16 x 68) =
#: 149,000 bytes; the user information (maximum length, implementation UID and version, a
#: role selection and an extended negotiation item for every context, a user identity token
#: of some KiB) adds less than 40,000.  Real requests are far smaller (dcmtk's storescu
#: proposing its default storage classes: about 10 kB).  Every other PDU type but P-DATA-TF is 10 bytes
#: (release, abort) or only ever sent by an acceptor.
MAX_ASSOCIATE_RQ = 256 << 10
MAX_CONTROL_PDU = MAX_ASSOCIATE_RQ
#: A PDU longer than this is read in pieces instead of into one preallocated buffer.
PREALLOCATE_LIMIT = 16 << 20
#: A PDU that is not preallocated (anything but an admitted peer's P-DATA-TF) grows by at most
#: this much per read, so the memory it holds is what the peer really sent, not what it declared.
READ_CHUNK = 64 << 10
#: How often a read that is waiting for bytes looks at its deadline and whether it was cancelled.
READ_POLL = 0.2
_PDU_HEADER = struct.Struct(">BBL")
_PDV_HEADER = struct.Struct(">LB")
_PREAMBLE = b"\x00" * 128 + b"DICM"


_STANDARD_LOG_HANDLERS = (
    (evt.EVT_PDU_RECV, standard_pdu_recv_handler),
    (evt.EVT_PDU_SENT, standard_pdu_sent_handler),
    (evt.EVT_DIMSE_RECV, standard_dimse_recv_handler),
    (evt.EVT_DIMSE_SENT, standard_dimse_sent_handler),
)


@dataclass
class SpooledData:
    """A C-STORE data set as it was received into the spool, or why it was not."""

    incoming: IncomingFile | None
    refusal: str | None = None
    out_of_space: bool = False
    fragments: int = 0
    #: ``time.perf_counter()`` when the first and the last fragment arrived (for timing logs)
    started: float = field(default_factory=time.perf_counter)
    completed: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def write(self, data: memoryview | bytes) -> None:
        self.fragments += 1
        if self.incoming is not None:
            self.incoming.write(data)

    def discard(self) -> None:
        with self._lock:
            if self.incoming is not None:
                self.incoming.discard()


def spooled_data(request: object) -> SpooledData | None:
    """The spooled data set of a C-STORE request primitive, if it came through :class:`SpoolingDIMSE`."""
    spooled = getattr(request, SPOOLED_ATTRIBUTE, None)
    return spooled if isinstance(spooled, SpooledData) else None


def file_header(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str) -> bytes:
    """Preamble, ``DICM`` and File Meta Information exactly as ``Event.encoded_dataset()`` writes them."""
    meta = create_file_meta(
        sop_class_uid=UID(sop_class_uid), sop_instance_uid=UID(sop_instance_uid), transfer_syntax=UID(transfer_syntax)
    )
    return _PREAMBLE + encode_file_meta(meta)


class NodeHooks(Protocol):
    """What the receive path needs from the node that runs it."""

    spool: Spool

    def association_finished(self, assoc: Association) -> None: ...

    def connection_closed_before_admission(self, peer: str, detail: str) -> None: ...


class PeerLog:
    """Warnings about what peers send, at most ``burst`` per peer (IP address) in ``window`` seconds.

    A peer that sends garbage must not be able to fill the disk with the log: what goes beyond
    the burst is counted, and the count is logged in one line when the peer's window is over
    and it errs again (or when :meth:`flush` runs).
    """

    def __init__(self, logger: logging.Logger, *, burst: int = 5, window: float = 60.0) -> None:
        self._logger = logger
        self.burst = burst
        self.window = window
        self._lock = threading.Lock()
        self._peers: dict[str, list[float]] = {}  # peer -> [window start, logged, suppressed]

    def warning_from(self, peer: str, message: str, *args: object) -> bool:
        """Log ``message % args`` unless ``peer`` used up its burst; returns whether it was logged."""
        now = time.monotonic()
        with self._lock:
            entry = self._peers.get(peer)
            suppressed = 0
            if entry is None or now - entry[0] >= self.window:
                suppressed = int(entry[2]) if entry is not None else 0
                entry = [now, 0, 0]
                self._peers[peer] = entry
                if len(self._peers) > 4096:
                    self._forget(now)
            logged = entry[1] < self.burst
            if logged:
                entry[1] += 1
                last = entry[1] == self.burst
            else:
                entry[2] += 1
        if suppressed:
            self._summary(peer, suppressed)
        if logged:
            if last:
                message += " (further protocol errors from %s are counted for %g s, not logged one by one)"
                args = (*args, peer, self.window)
            self._logger.warning(message, *args)
        return logged

    def flush(self) -> None:
        """Log the counts not yet logged and start afresh."""
        with self._lock:
            peers, self._peers = self._peers, {}
        for peer, entry in peers.items():
            if entry[2]:
                self._summary(peer, int(entry[2]))

    def _summary(self, peer: str, count: int) -> None:
        self._logger.warning("%d more protocol error(s) from %s were not logged", count, peer)

    def _forget(self, now: float) -> None:
        for peer in [peer for peer, entry in self._peers.items() if now - entry[0] >= self.window]:
            del self._peers[peer]


#: Where protocol errors of peers are logged (rate-limited per peer).
PROTOCOL_LOG = PeerLog(LOGGER)


def peer_key(address: str) -> str:
    """The IP address a peer is counted and logged under (an IPv4-mapped IPv6 address as IPv4)."""
    parsed = parse_address(address)
    return str(parsed) if parsed is not None else address


@dataclass(eq=False)
class PendingConnection:
    """A connection that has not been admitted yet: from where, and until when it may take."""

    address: str
    deadline: float  # time.monotonic()
    released: bool = False


class PendingConnections:
    """Counts connections that are not admitted yet (TLS handshake or A-ASSOCIATE-RQ not done), per IP and in total."""

    def __init__(self, *, max_total: int, max_per_address: int, timeout: float) -> None:
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.timeout = timeout
        self._lock = threading.Lock()
        self._per_address: Counter[str] = Counter()
        self._total = 0

    def enter(self, address: str) -> PendingConnection | str:
        """A new pending connection from ``address``, or why it is refused."""
        with self._lock:
            if self._total >= self.max_total:
                return f"{self._total} connections are waiting for admission, the maximum is {self.max_total}"
            if self._per_address[address] >= self.max_per_address:
                return (
                    f"{self._per_address[address]} connections from {address} are waiting for admission, "
                    f"the maximum per address is {self.max_per_address}"
                )
            self._total += 1
            self._per_address[address] += 1
        return PendingConnection(address, time.monotonic() + self.timeout)

    def leave(self, pending: PendingConnection) -> None:
        """The connection was admitted, rejected or closed (once; later calls do nothing)."""
        with self._lock:
            if pending.released:
                return
            pending.released = True
            self._total -= 1
            self._per_address[pending.address] -= 1
            if self._per_address[pending.address] <= 0:
                del self._per_address[pending.address]

    @property
    def count(self) -> int:
        with self._lock:
            return self._total


class ReadStoppedError(Exception):
    """A read gave up before its bytes arrived: the peer stalled, a deadline passed, or the association is ending."""

    def __init__(self, reason: str, *, stalled: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        #: the peer sent nothing for the stall bound (else: the admission deadline passed, or the association ends)
        self.stalled = stalled


@dataclass
class ReadBounds:
    """What bounds one read: the absolute ``deadline`` and the longest ``stall`` without a byte
    (``time.monotonic()`` seconds; None: no bound), ``cancelled`` (looked at while waiting), and
    ``progress`` (called whenever bytes arrive)."""

    deadline: float | None = None
    stall: float | None = None
    cancelled: Callable[[], bool] = lambda: False
    progress: Callable[[], None] = lambda: None


class SpoolingSocket(AssociationSocket):
    """Reads each PDU with as few ``recv_into`` calls as the kernel allows, never without a bound."""

    def recv(self, nr_bytes: int) -> bytearray:
        """pynetdicom's interface: ``nr_bytes`` (fewer when the peer closed), the network timeout as the stall bound."""
        return self.read(nr_bytes, ReadBounds(stall=self.assoc.network_timeout), preallocate=True)

    def read(self, nr_bytes: int, bounds: ReadBounds, *, preallocate: bool) -> bytearray:
        """``nr_bytes`` from the peer, or fewer when it closed the connection; raises :class:`ReadStoppedError`.

        With ``preallocate`` (an admitted peer's P-DATA-TF) the buffer is allocated at once and
        filled with ``recv_into``; otherwise it grows by at most :data:`READ_CHUNK` per read.
        """
        sock = self.socket
        if sock is None:
            return bytearray()
        # an admitted peer's PDU too long to preallocate is read in large pieces, anything else in small ones
        chunk_size = PREALLOCATE_LIMIT if preallocate else READ_CHUNK
        if preallocate and nr_bytes <= PREALLOCATE_LIMIT:
            buffer = bytearray(nr_bytes)
        else:
            buffer = bytearray()
            preallocate = False
        view = memoryview(buffer) if preallocate else None
        received = 0
        last_byte = time.monotonic()
        # a plain socket stays blocking (sends need that) and is read with MSG_DONTWAIT, waiting in poll() only
        # when nothing is there; a TLS socket (no flags allowed) is put in timeout mode for the read
        tls = isinstance(sock, ssl.SSLSocket)
        flags = 0 if tls else socket.MSG_DONTWAIT
        if tls:
            sock.settimeout(self._wait(bounds, last_byte))
        try:
            while received < nr_bytes:
                try:
                    count = self._recv_once(sock, buffer, view, nr_bytes - received, chunk_size, flags)
                except (BlockingIOError, TimeoutError):
                    self._check(bounds, last_byte)
                    wait = self._wait(bounds, last_byte)
                    if tls:
                        sock.settimeout(wait)
                    else:
                        self._poll(sock, wait)
                    continue
                if not count:  # connection closed: return what arrived, as pynetdicom does
                    break
                received += count
                last_byte = time.monotonic()
                bounds.progress()
        finally:
            if tls:
                with contextlib.suppress(OSError):
                    sock.settimeout(None)  # sends stay blocking
        if view is not None:
            view.release()
            del buffer[received:]
        return buffer

    @staticmethod
    def _recv_once(
        sock: socket.socket, buffer: bytearray, view: memoryview | None, missing: int, chunk_size: int, flags: int
    ) -> int:
        """One ``recv``: into the preallocated ``view`` (its unfilled end), or appended to ``buffer``; the count."""
        if view is not None:
            return sock.recv_into(view[len(view) - missing :], missing, flags)
        chunk = sock.recv(min(missing, chunk_size), flags)
        buffer += chunk
        return len(chunk)

    @staticmethod
    def _poll(sock: socket.socket, wait: float) -> None:
        """Wait until ``sock`` is readable (or closed), at most ``wait`` seconds."""
        poller = select.poll()
        poller.register(sock, select.POLLIN | select.POLLPRI)
        poller.poll(wait * 1000)

    @staticmethod
    def _wait(bounds: ReadBounds, last_byte: float) -> float:
        """How long the next ``recv`` may block before the bounds are looked at again."""
        now = time.monotonic()
        wait = READ_POLL
        if bounds.deadline is not None:
            wait = min(wait, bounds.deadline - now)
        if bounds.stall is not None:
            wait = min(wait, last_byte + bounds.stall - now)
        return max(wait, 0.001)

    @staticmethod
    def _check(bounds: ReadBounds, last_byte: float) -> None:
        now = time.monotonic()
        if bounds.cancelled():
            raise ReadStoppedError("the association is ending", stalled=False)
        if bounds.deadline is not None and now >= bounds.deadline:
            raise ReadStoppedError("the admission time is over", stalled=False)
        if bounds.stall is not None and now - last_byte >= bounds.stall:
            raise ReadStoppedError(f"no data for {bounds.stall:g} s inside a PDU", stalled=True)


class _WakingQueue(queue.Queue[Any]):
    """A queue that calls ``wake`` after every ``put``, so its consumer can sleep instead of polling."""

    def __init__(self, wake: Callable[[], None]) -> None:
        super().__init__()
        self._wake = wake

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._wake()


class SpoolingDUL(DULServiceProvider):
    """The Upper Layer provider with a copy-free P-DATA-TF decoder, a PDU size limit, and no busy loop.

    pynetdicom's DUL thread polls its socket and queues every millisecond, idle or not (about
    4 % of a core per association here).  This one sleeps in ``select`` on the socket and a
    wake-up pipe that every queue ``put`` writes to, and still looks at its timers every
    :data:`IDLE_WAIT` seconds.
    """

    def __init__(
        self,
        assoc: Association,
        max_pdu_length: int,
        wake_association: Callable[[], None],
        admission_deadline: float | None = None,
    ) -> None:
        super().__init__(assoc)
        self._max_pdu_length = max_pdu_length
        #: ``time.monotonic()`` by which the A-ASSOCIATE-RQ must have been read (None: no bound but ARTIM)
        self.admission_deadline = admission_deadline
        #: set after a protocol error or a stalled read: the byte stream cannot be trusted, nothing more is read
        self.stream_broken = False
        self._wake_association = wake_association
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._wake_lock = threading.Lock()
        self._wake_closed = False
        # the queues are still empty: replace them with ones that wake their consumers
        self.event_queue = _WakingQueue(self.wake)
        self.to_provider_queue = _WakingQueue(self.wake)
        self.to_user_queue = _WakingQueue(wake_association)

    def wake(self) -> None:
        """Wake the DUL thread (something was queued for it)."""
        with self._wake_lock:
            if self._wake_closed:
                return
            with contextlib.suppress(BlockingIOError):  # a full pipe is awake enough
                os.write(self._wake_write, b"\0")

    def close_wake(self) -> None:
        """Close the wake-up pipe (once the association is over)."""
        with self._wake_lock:
            if not self._wake_closed:
                self._wake_closed = True
                os.close(self._wake_read)
                os.close(self._wake_write)

    def kill_dul(self) -> None:
        super().kill_dul()
        self.wake()

    def stop_dul(self) -> bool:
        """As pynetdicom's, but wakes the loop so it sees the flag at once."""
        if self.state_machine.current_state != "Sta1":
            return False
        self._kill_thread = True
        self.wake()
        if threading.current_thread() is not self:
            self.join()
        return True

    def _wait_for_work(self, timeout: float) -> None:
        """Sleep until the socket has data, something was queued, or ``timeout`` passed."""
        wrapper = self.socket
        sock = wrapper.socket if wrapper is not None else None
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return  # decrypted bytes already buffered: select cannot see them
        watched: list[Any] = [self._wake_read]
        if sock is not None and sock.fileno() >= 0:
            watched.append(sock)
        try:
            readable, _, _ = select.select(watched, [], [], timeout)
        except (OSError, ValueError):  # the socket closed under us: the loop notices
            return
        if self._wake_read in readable:
            with contextlib.suppress(BlockingIOError, OSError):
                os.read(self._wake_read, 4096)

    def run_reactor(self) -> None:
        """pynetdicom's DUL loop (3.0), with ``time.sleep(0.001)`` replaced by :meth:`_wait_for_work`."""
        self._idle_timer.start()
        sleep = False
        try:
            while True:
                if not self.assoc._dul_ready.is_set():
                    self.assoc._dul_ready.set()
                    sleep = True
                if sleep:
                    self._wait_for_work(IDLE_WAIT)
                if self._kill_thread:
                    break
                if self.artim_timer.expired:
                    self.event_queue.put("Evt18")
                elif self._admission_expired():  # logged by the association
                    self.event_queue.put("Evt18")  # as ARTIM expiring: close the transport connection (AA-2)
                try:
                    if self._process_recv_primitive():
                        pass
                    elif self._is_transport_event():
                        self._idle_timer.restart()
                except Exception as exc:  # noqa: BLE001 - as pynetdicom: abort the association, never the server
                    log_unexpected(LOGGER, "the DUL loop failed; aborting the association", exc)
                    abort_pdu = A_ABORT_RQ()
                    abort_pdu.source = 0x02
                    abort_pdu.reason_diagnostic = 0x00
                    with contextlib.suppress(OSError, AttributeError):
                        cast(AssociationSocket, self.socket).send(abort_pdu.encode())
                    self.assoc.is_aborted = True
                    self.assoc.is_established = False
                    self.assoc._kill = True
                    self._kill_thread = True
                    return
                try:
                    event = self.event_queue.get(block=False)
                except queue.Empty:
                    sleep = True
                    continue
                self.state_machine.do_action(event)
                sleep = False
        finally:
            self._wake_association()  # the association reactor checks whether we are alive

    @property
    def peer(self) -> str:
        """The peer's IP address, for the log."""
        info = self.assoc.requestor.address_info
        return peer_key(str(info.address)) if info is not None else "an unknown peer"

    def _admission_expired(self) -> bool:
        deadline = self.admission_deadline
        return deadline is not None and self.state_machine.current_state == "Sta2" and time.monotonic() >= deadline

    def _ending(self) -> bool:
        """Is the association being aborted or killed (so a read in progress should give up)?"""
        if self._kill_thread or self.assoc._kill:
            return True
        with contextlib.suppress(IndexError):
            return isinstance(self.to_provider_queue.queue[0], (A_ABORT, A_P_ABORT))
        return False

    def _is_transport_event(self) -> bool:
        """pynetdicom's, except that nothing is read from a broken stream."""
        if self.stream_broken:
            return False
        return super()._is_transport_event()

    def _break_stream(self, *, abort: bool) -> None:
        """Stop reading this connection: send an A-ABORT (``abort``) and close the transport.

        After a framing error or a stalled read the next byte's meaning is unknown, so reading on
        (as the state machine's Sta13 would, until the peer closes) only turns garbage into log lines.
        """
        self.stream_broken = True
        if abort and self.state_machine.current_state != "Sta13":
            self.event_queue.put("Evt19")  # AA-1/AA-8: A-ABORT to the peer, A-P-ABORT to the association
        self.event_queue.put("Evt18")  # AA-2: close the transport connection, the DUL ends

    def _protocol_error(self, message: str, *args: object) -> None:
        PROTOCOL_LOG.warning_from(self.peer, message + "; aborting the association from %s", *args, self.peer)
        self._break_stream(abort=True)

    def _read(self, nr_bytes: int, *, preallocate: bool) -> bytearray:
        pre_admission = self.state_machine.current_state == "Sta2"
        bounds = ReadBounds(
            deadline=self.admission_deadline if pre_admission else None,
            stall=self.assoc.network_timeout,
            cancelled=self._ending,
            progress=self._idle_timer.restart,
        )
        return cast(SpoolingSocket, self.socket).read(nr_bytes, bounds, preallocate=preallocate)

    def _read_pdu_data(self) -> None:  # noqa: PLR0911, PLR0912 - one early return per PS3.8 failure
        if self.stream_broken:
            return
        pre_admission = self.state_machine.current_state == "Sta2"
        try:
            header = self._read(6, preallocate=False)
            if not header:
                self.event_queue.put("Evt17")  # transport connection closed
                return
            if len(header) != 6:
                PROTOCOL_LOG.warning_from(self.peer, "connection from %s closed inside a PDU header", self.peer)
                self.event_queue.put("Evt17")
                return
            pdu_type, _, pdu_length = _PDU_HEADER.unpack(header)
            if pdu_type not in (0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07):
                self._protocol_error("unknown PDU type 0x%02X received", pdu_type)
                return
            if pre_admission and pdu_type != 0x01:
                self._protocol_error("a PDU of type 0x%02X before the association request", pdu_type)
                return
            # a P-DATA-TF may be as long as we advertised (0: no limit); other PDUs are small
            limit = (self._max_pdu_length or 0xFFFFFFFF) if pdu_type == 0x04 else MAX_CONTROL_PDU
            if pdu_length > limit:
                self._protocol_error("PDU of %d bytes exceeds the maximum of %d we accept", pdu_length, limit)
                return
            body = self._read(pdu_length, preallocate=pdu_type == 0x04)
        except ReadStoppedError as stop:
            if stop.stalled:  # the admission deadline is logged by the association
                PROTOCOL_LOG.warning_from(self.peer, "closing the connection from %s: %s", self.peer, stop.reason)
            self._break_stream(abort=not pre_admission)
            return
        except OSError:
            self.event_queue.put("Evt17")  # transport connection closed
            return
        if len(body) != pdu_length:
            PROTOCOL_LOG.warning_from(
                self.peer, "connection from %s closed %d bytes into a %d-byte PDU", self.peer, len(body), pdu_length
            )
            self.event_queue.put("Evt17")
            return
        if pdu_type != 0x04:
            self._decode_control_pdu(header + body)
            return
        try:
            pdu = self._decode_p_data(body)
        except ValueError as exc:
            self._protocol_error("malformed P-DATA-TF PDU (%s)", exc)
            return
        if self.assoc.get_handlers(evt.EVT_PDU_RECV):
            evt.trigger(self.assoc, evt.EVT_PDU_RECV, {"pdu": pdu})
        self.event_queue.put("Evt10")
        self._recv_pdu.put(pdu)

    def _decode_control_pdu(self, data: bytearray) -> None:
        try:
            pdu_class, event = _PDU_TYPES[bytes(data[0:1])]
            pdu = pdu_class()
            pdu.decode(bytes(data))
        except (ValueError, KeyError, IndexError, TypeError, struct.error) as exc:
            self._protocol_error("undecodable PDU (%s: %s)", type(exc).__name__, exc)
            return
        evt.trigger(self.assoc, evt.EVT_PDU_RECV, {"pdu": pdu})
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)

    @staticmethod
    def _decode_p_data(body: bytearray) -> P_DATA_TF:
        """Presentation data values as memoryviews into ``body`` (PS3.8 §9.3.5.1)."""
        view = memoryview(body)
        items: list[PresentationDataValueItem] = []
        offset = 0
        end = len(body)
        while offset < end:
            if offset + 5 > end:
                raise ValueError("truncated presentation data value item")
            item_length, context_id = _PDV_HEADER.unpack_from(body, offset)
            if item_length < 2 or offset + 4 + item_length > end:
                raise ValueError(f"presentation data value item length {item_length} does not fit the PDU")
            item = PresentationDataValueItem()
            item.presentation_context_id = context_id
            item.presentation_data_value = view[offset + 5 : offset + 4 + item_length]  # type: ignore[assignment]
            items.append(item)
            offset += 4 + item_length
        if not items:
            raise ValueError("P-DATA-TF PDU without presentation data values")
        pdu = P_DATA_TF()
        pdu.presentation_data_value_items = items
        return pdu


class SpoolingDIMSE(DIMSEServiceProvider):
    """The DIMSE provider that streams C-STORE data sets into the spool as fragments arrive."""

    def __init__(self, assoc: Association, spool: Spool, wake_association: Callable[[], None]) -> None:
        super().__init__(assoc)
        self._spool = spool
        self._spooled: SpooledData | None = None  # the C-STORE data set being received
        self.msg_queue = _WakingQueue(wake_association)

    def receive_primitive(self, primitive: P_DATA) -> None:
        for context_id, data in primitive.presentation_data_value_list:
            if self._spooled is not None:
                self._receive_store_data(context_id, data)
                continue
            single = P_DATA()
            single.presentation_data_value_list = []  # appended, as P_DATA_TF.to_primitive does: no bytes check
            single.presentation_data_value_list.append((context_id, data))
            if self.message is None:
                self.message = DIMSEMessage()
            message = self.message
            complete = message.decode_msg(single, self.assoc)
            if complete:
                self._dispatch(message)
            elif data[0] & 0x03 == 0x03 and isinstance(message, C_STORE_RQ):
                # the command set of a C-STORE-RQ is complete and a data set follows
                self._spooled = self._begin(message)

    def _begin(self, message: C_STORE_RQ) -> SpooledData:
        command = message.command_set
        context = self.assoc._accepted_cx.get(cast(int, message.context_id))
        if context is None or not context.transfer_syntax:
            return SpooledData(incoming=None, refusal="the presentation context was not accepted")
        try:
            header = file_header(
                str(command.AffectedSOPClassUID), str(command.AffectedSOPInstanceUID), str(context.transfer_syntax[0])
            )
        except (ValueError, TypeError, AttributeError) as exc:
            return SpooledData(incoming=None, refusal=f"the C-STORE command cannot be used: {type(exc).__name__}")
        try:
            return SpooledData(incoming=self._spool.begin(header))
        except OutOfSpaceError as exc:
            return SpooledData(incoming=None, refusal=str(exc), out_of_space=True)
        except OSError as exc:
            return SpooledData(incoming=None, refusal=f"cannot create a spool file: {exc.strerror}", out_of_space=True)

    def _receive_store_data(self, context_id: int, data: memoryview | bytes) -> None:
        spooled = cast(SpooledData, self._spooled)
        message = cast(DIMSEMessage, self.message)
        control = data[0]
        if control & 0x01 or context_id != message.context_id:
            spooled.discard()
            self._spooled = None
            self._abort("command fragment or other context inside a C-STORE data set")
            return
        spooled.write(data[1:])
        if control & 0x02:  # the last fragment of the data set
            spooled.completed = time.perf_counter()
            self._spooled = None
            self._dispatch(message, spooled)

    def _dispatch(self, message: DIMSEMessage, spooled: SpooledData | None = None) -> None:
        """Hand a complete message to the association, as pynetdicom's ``receive_primitive`` does."""
        evt.trigger(self.assoc, evt.EVT_DIMSE_RECV, {"message": message})
        context_id = cast(int, message.context_id)
        self.message = None
        try:
            request = message.message_to_primitive()
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            if spooled is not None:
                spooled.discard()
            self._abort("invalid DIMSE message (%s)", type(exc).__name__)
            return
        if spooled is not None:
            setattr(request, SPOOLED_ATTRIBUTE, spooled)
        if isinstance(request, C_CANCEL):
            if len(self.cancel_req) < 10:
                self.cancel_req[cast(int, request.MessageIDBeingRespondedTo)] = request
            return
        self.msg_queue.put((context_id, request))

    def _abort(self, message: str, *args: object) -> None:
        dul = self.dul
        if isinstance(dul, SpoolingDUL):
            dul._protocol_error(message, *args)
        else:  # pragma: no cover - the DUL is always ours
            self.dul.event_queue.put("Evt19")

    def discard_pending(self) -> int:
        """Delete the spool files of data sets no handler will see (the association ended); returns how many."""
        count = 0
        if self._spooled is not None:
            self._spooled.discard()
            self._spooled = None
            count += 1
        while True:
            try:
                _, request = self.msg_queue.get_nowait()
            except queue.Empty:
                break
            spooled = spooled_data(request)
            if spooled is not None:
                spooled.discard()
                count += 1
        return count


class GatewayAssociation(Association):
    """An acceptor association that tells the node when it ends and cleans up what it left."""

    def __init__(self, ae: Any, mode: str, hooks: NodeHooks) -> None:
        super().__init__(ae, mode)
        self.hooks = hooks
        if not LOGGER.isEnabledFor(logging.DEBUG):
            for event_type, handler in _STANDARD_LOG_HANDLERS:
                self.unbind(event_type, handler)
        #: outcomes of this association's C-STOREs ("new", "duplicate", "replaced", "refused")
        self.stats: Counter[str] = Counter()
        #: the instances this association stored, for the observers' ``association_ended``
        self.received: list[ReceivedInstance] = []
        #: set when a DIMSE message or an upper layer primitive is queued, or the DUL ends
        self.wake_event = threading.Event()
        #: the accepted socket, and its place among the connections not admitted yet (None once decided)
        self.client_socket: socket.socket | None = None
        self.pending: PendingConnection | None = None
        self._request_deadline: float | None = None

    def leave_pending(self) -> None:
        """The association request was decided (or the connection ended): it no longer counts as pending."""
        server = self._server
        if isinstance(server, GatewayServer) and self.client_socket is not None:
            server.release_pending(self.client_socket)
        self.pending = None

    def run_reactor(self) -> None:
        try:
            self._run_acceptor()
        finally:
            self.leave_pending()
            dimse = self.dimse
            if isinstance(dimse, SpoolingDIMSE):
                left = dimse.discard_pending()
                if left:
                    LOGGER.info("association ended with %d incomplete C-STORE data set(s); nothing was stored", left)
            dul = self.dul
            if isinstance(dul, SpoolingDUL):
                dul.join(timeout=5)
                if not dul.is_alive():
                    dul.close_wake()
            self.hooks.association_finished(self)

    def _run_acceptor(self) -> None:
        """pynetdicom's acceptor ``run_reactor`` (3.0), waiting for the request no longer than the admission
        deadline and not at all once the DUL has ended, and leaving the pending count once it is decided."""
        if not self._started_dul:
            self.dul.start()
            self._started_dul = True
            self._dul_ready.wait()
        primitive = self._wait_for_request()
        if not isinstance(primitive, A_ASSOCIATE):
            if self._request_deadline is not None and time.monotonic() >= self._request_deadline:
                peer = peer_key(str(self.requestor.address))
                PROTOCOL_LOG.warning_from(peer, "closing the connection from %s: no association request in time", peer)
            self.hooks.connection_closed_before_admission(str(self.requestor.address), "no association request")
            self.kill()
            self._close_transport()
            return
        self.requestor.primitive = primitive
        evt.trigger(self, evt.EVT_REQUESTED, {})
        self.leave_pending()
        # User used EVT_REQUESTED to send an A-ABORT or A-ASSOCIATE-RJ
        if not self.is_aborted and not self.is_rejected:
            self.acse.negotiate_association()
        if self.is_established:
            with set_timer_resolution(self._timer_resolution):
                self._run_reactor()
        self._close_transport()

    def _wait_for_request(self) -> Any:
        """The first primitive from the DUL (the A-ASSOCIATE request), or None when the DUL ended or time ran out."""
        deadlines = [self.pending.deadline] if self.pending is not None else []
        if self.acse_timeout is not None:
            deadlines.append(time.monotonic() + self.acse_timeout)
        deadline = self._request_deadline = min(deadlines, default=None)
        while True:
            self.wake_event.clear()
            primitive: Any = self.dul.receive_pdu(wait=False)  # its annotation reads as None to some mypy versions
            if primitive is not None:
                return primitive
            if not self.dul.is_alive():
                return None
            wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
            if wait <= 0:
                return None
            self.wake_event.wait(wait)

    def _close_transport(self) -> None:
        """Shut down and close the connection (as pynetdicom does when its acceptor reactor ends)."""
        wrapper = self.dul.socket
        if self._server is not None and wrapper is not None and wrapper.socket is not None:
            self._server.shutdown_request(wrapper.socket)

    def _run_reactor(self) -> None:
        """pynetdicom's acceptor loop (3.0), waiting on :attr:`wake_event` instead of polling every millisecond."""
        self._is_paused = False
        while not self._kill:
            self._is_paused = True
            self.wake_event.wait(IDLE_WAIT)  # paused while asleep: nothing is taken off the queues
            self._reactor_checkpoint.wait()
            self._is_paused = False
            self.wake_event.clear()  # before looking, so a later put wakes the next wait

            context_id, msg = self.dimse.get_msg(block=False)
            if msg:
                self._serve_request(msg, cast(int, context_id))
            if not self.dimse.msg_queue.empty() or self.dul.to_user_queue.qsize():
                self.wake_event.set()  # more to do: do not sleep on the next round

            if self.is_established and self.acse.is_release_requested():
                self.acse.send_release(is_response=True)
                LOGGER.info("Association Released")
                self.is_released = True
                self.is_established = False
                evt.trigger(self, evt.EVT_RELEASED, {})
                self.kill()
                return

            if self.acse.is_aborted():
                LOGGER.info("Association Aborted%s", " (A-P-ABORT)" if self.acse.is_aborted("a-p-abort") else "")
                self.dul.receive_pdu(wait=False)
                self.is_aborted = True
                self.is_established = False
                evt.trigger(self, evt.EVT_ABORTED, {})
                self.kill()
                return

            if not self.dul.is_alive():
                self.kill()
                return

            if self.dul.idle_timer_expired():
                LOGGER.error("Network timeout reached")
                if self.network_timeout_response == "A-RELEASE":
                    self._is_paused = True
                    self._reactor_checkpoint.wait()
                    self.release()
                    self._is_paused = False
                else:
                    self.abort()
                self.kill()
                return


class GatewayRequestHandler(RequestHandler):
    """Builds a :class:`GatewayAssociation` with the spooling DUL and DIMSE providers."""

    server: GatewayServer

    def handle(self) -> None:
        request = self.request
        try:
            if isinstance(request, ssl.SSLSocket) and not self._tls_handshake(request):
                return
            super().handle()
        except BaseException:
            self.server.release_pending(request)
            raise

    def _tls_handshake(self, sock: ssl.SSLSocket) -> bool:
        """The TLS handshake, here in the association's thread rather than in the accept loop.

        It is bounded by the ACSE timeout and by the connection's admission deadline."""
        timeouts = [self.ae.acse_timeout] if self.ae.acse_timeout is not None else []
        pending = self.server.pending_for(sock)
        if pending is not None:
            timeouts.append(max(0.001, pending.deadline - time.monotonic()))
        try:
            sock.settimeout(min(timeouts, default=None))
            sock.do_handshake()
            sock.settimeout(None)
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc.__class__.__name__
            peer = peer_key(str(self.client_address[0]))
            PROTOCOL_LOG.warning_from(peer, "TLS handshake with %s failed: %s", peer, reason)
            self.server.hooks.connection_closed_before_admission(str(self.client_address[0]), "TLS handshake failed")
            self.server.shutdown_request(sock)
            return False
        return True

    def _create_association(self) -> Association:
        server = self.server
        assoc = GatewayAssociation(self.ae, "acceptor", server.hooks)
        assoc._server = server
        assoc.client_socket = cast(socket.socket, self.request)
        assoc.pending = server.pending_for(self.request)
        deadline = assoc.pending.deadline if assoc.pending is not None else None
        assoc.dul = SpoolingDUL(assoc, self.ae.maximum_pdu_size, assoc.wake_event.set, deadline)
        assoc.dimse = SpoolingDIMSE(assoc, server.hooks.spool, assoc.wake_event.set)
        # the timeouts are pushed into the DUL's timers by their setters
        assoc.acse_timeout = self.ae.acse_timeout
        assoc.network_timeout = self.ae.network_timeout
        assoc.dimse_timeout = self.ae.dimse_timeout
        assoc.name = f"AcceptorThread@{self.client_address[0]}"

        sock = SpoolingSocket(assoc, client_socket=cast(socket.socket, self.request))
        assoc.set_socket(sock)
        assoc.acceptor.maximum_length = self.ae.maximum_pdu_size
        assoc.acceptor.ae_title = server.ae_title
        assoc.acceptor.address_info = self.local
        assoc.acceptor.implementation_class_uid = self.ae.implementation_class_uid
        assoc.acceptor.implementation_version_name = self.ae.implementation_version_name
        # shared, not deep-copied (pynetdicom copies 170 x 45 contexts, ~50 ms per association):
        # negotiation only reads them and builds new result contexts
        assoc.acceptor.supported_contexts = server.contexts
        assoc.requestor.address_info = self.remote
        for event_type, handlers in server._handlers.items():
            if event_type.is_intervention:
                if handlers and handlers[0] is not None:
                    assoc.bind(event_type, *handlers)
            else:
                for handler, args in cast(list[tuple[Callable[..., Any], list[Any] | None]], handlers):
                    if (event_type, handler) in _STANDARD_LOG_HANDLERS and not LOGGER.isEnabledFor(logging.DEBUG):
                        continue  # pynetdicom's per-PDU/per-message logging: costly and duplicated by ours
                    assoc.bind(event_type, handler, args)
        return assoc


class GatewayServer(ThreadedAssociationServer):
    """The association server: TLS handshakes happen per association, not in the accept loop, and
    connections not admitted yet are counted (:class:`PendingConnections`); beyond its limits a new
    connection is closed at once, before a thread is started for it."""

    daemon_threads = True

    def __init__(self, *args: Any, hooks: NodeHooks, pending: PendingConnections, **kwargs: Any) -> None:
        self.hooks = hooks
        self.pending = pending
        self._pending_lock = threading.Lock()
        self._pending_by_socket: dict[socket.socket, PendingConnection] = {}
        kwargs["request_handler"] = GatewayRequestHandler
        super().__init__(*args, **kwargs)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Count the new connection as pending, or refuse it (socketserver then closes it)."""
        peer = peer_key(str(client_address[0]))
        entered = self.pending.enter(peer)
        if isinstance(entered, str):
            PROTOCOL_LOG.warning_from(peer, "closed a new connection from %s at once: %s", peer, entered)
            self.hooks.connection_closed_before_admission(str(client_address[0]), entered)
            return False
        with self._pending_lock:
            self._pending_by_socket[request] = entered
        return True

    def pending_for(self, request: Any) -> PendingConnection | None:
        with self._pending_lock:
            return self._pending_by_socket.get(request)

    def release_pending(self, request: Any) -> None:
        """The connection of ``request`` no longer waits for admission (idempotent)."""
        with self._pending_lock:
            pending = self._pending_by_socket.pop(request, None)
        if pending is not None:
            self.pending.leave(pending)

    def shutdown_request(self, request: Any) -> None:
        self.release_pending(request)
        super().shutdown_request(request)

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        listening = cast(socket.socket, self.socket)
        client, address = listening.accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            client = self.ssl_context.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
        return client, address
