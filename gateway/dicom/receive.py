"""pynetdicom's receive path, made fast: C-STORE data streams straight into the spool.

pynetdicom (3.x) reads a PDU 4 KiB at a time, copies it three times on its way to the DIMSE
layer, and keeps every C-STORE data set in memory until the handler runs.  For a 7 MB
radiograph that is ~2,000 ``recv`` calls and ~30 MB of copies per instance, all while
holding the GIL, and the file is only written after the last byte arrived.  This module
replaces three parts of one acceptor association, and nothing else:

* :class:`SpoolingSocket` reads a whole PDU with ``recv_into`` into one buffer;
* :class:`SpoolingDUL` slices P-DATA-TF PDUs into presentation data values without copying
  and refuses PDUs longer than the maximum we advertised;
* :class:`SpoolingDIMSE` writes every C-STORE data set fragment to an
  :class:`~gateway.spool.IncomingFile` (which hashes it) as it arrives, so when the last
  fragment lands only the fsync, rename and index remain.

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
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

from gateway.safelog import log_unexpected
from gateway.spool import IncomingFile, OutOfSpaceError, Spool

LOGGER = logging.getLogger(__name__)

#: Attribute of a C-STORE request primitive holding its :class:`SpooledData`.
SPOOLED_ATTRIBUTE = "gazex_spooled"
#: How long an idle DUL or association thread sleeps before it looks at its timers again.
IDLE_WAIT = 0.05
#: Largest non-P-DATA PDU accepted (an A-ASSOCIATE-RQ with every context is ~150 kB).
MAX_CONTROL_PDU = 16 << 20
#: A PDU longer than this is read in pieces instead of into one preallocated buffer.
PREALLOCATE_LIMIT = 16 << 20
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


class SpoolingSocket(AssociationSocket):
    """Reads each PDU with as few ``recv_into`` calls as the kernel allows."""

    def recv(self, nr_bytes: int) -> bytearray:
        sock = cast(socket.socket, self.socket)
        if nr_bytes > PREALLOCATE_LIMIT:
            return self._recv_in_pieces(sock, nr_bytes)
        buffer = bytearray(nr_bytes)
        view = memoryview(buffer)
        received = 0
        while received < nr_bytes:
            count = sock.recv_into(view[received:], nr_bytes - received)
            if not count:  # connection closed: return what arrived, as pynetdicom does
                del view
                del buffer[received:]
                return buffer
            received += count
        return buffer

    @staticmethod
    def _recv_in_pieces(sock: socket.socket, nr_bytes: int) -> bytearray:
        buffer = bytearray()
        while len(buffer) < nr_bytes:
            chunk = sock.recv(min(nr_bytes - len(buffer), PREALLOCATE_LIMIT))
            if not chunk:
                break
            buffer += chunk
        return buffer


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

    def __init__(self, assoc: Association, max_pdu_length: int, wake_association: Callable[[], None]) -> None:
        super().__init__(assoc)
        self._max_pdu_length = max_pdu_length
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

    def _read_pdu_data(self) -> None:  # noqa: PLR0911 - one early return per PS3.8 failure
        sock = cast(SpoolingSocket, self.socket)
        try:
            header = sock.recv(6)
        except (OSError, TimeoutError):
            self.event_queue.put("Evt17")  # transport connection closed
            return
        if len(header) != 6:
            self.event_queue.put("Evt17")
            return
        pdu_type, _, pdu_length = _PDU_HEADER.unpack(header)
        if pdu_type not in (0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07):
            LOGGER.warning("unknown PDU type 0x%02X received; aborting the association", pdu_type)
            self.event_queue.put("Evt19")
            return
        # a P-DATA-TF may be as long as we advertised (0: no limit); other PDUs are small
        limit = (self._max_pdu_length or 0xFFFFFFFF) if pdu_type == 0x04 else MAX_CONTROL_PDU
        if pdu_length > limit:
            LOGGER.warning(
                "PDU of %d bytes exceeds the maximum of %d we advertised; aborting the association", pdu_length, limit
            )
            self.event_queue.put("Evt19")
            return
        try:
            body = sock.recv(pdu_length)
        except (OSError, TimeoutError):
            self.event_queue.put("Evt17")
            return
        if len(body) != pdu_length:
            LOGGER.warning("connection closed %d bytes into a %d-byte PDU", len(body), pdu_length)
            self.event_queue.put("Evt17")
            return
        if pdu_type != 0x04:
            self._decode_control_pdu(header + body)
            return
        try:
            pdu = self._decode_p_data(body)
        except ValueError as exc:
            LOGGER.warning("malformed P-DATA-TF PDU (%s); aborting the association", exc)
            self.event_queue.put("Evt19")
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
            LOGGER.warning("undecodable PDU (%s: %s); aborting the association", type(exc).__name__, exc)
            self.event_queue.put("Evt19")
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
            LOGGER.warning("command fragment or other context inside a C-STORE data set; aborting the association")
            spooled.discard()
            self._spooled = None
            self.dul.event_queue.put("Evt19")
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
            LOGGER.warning("invalid DIMSE message (%s); aborting the association", type(exc).__name__)
            if spooled is not None:
                spooled.discard()
            self.dul.event_queue.put("Evt19")
            return
        if spooled is not None:
            setattr(request, SPOOLED_ATTRIBUTE, spooled)
        if isinstance(request, C_CANCEL):
            if len(self.cancel_req) < 10:
                self.cancel_req[cast(int, request.MessageIDBeingRespondedTo)] = request
            return
        self.msg_queue.put((context_id, request))

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
        #: set when a DIMSE message or an upper layer primitive is queued, or the DUL ends
        self.wake_event = threading.Event()

    def run_reactor(self) -> None:
        try:
            super().run_reactor()
        finally:
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
        if isinstance(request, ssl.SSLSocket) and not self._tls_handshake(request):
            return
        super().handle()

    def _tls_handshake(self, sock: ssl.SSLSocket) -> bool:
        """The TLS handshake, here in the association's thread rather than in the accept loop."""
        timeout = self.ae.acse_timeout
        try:
            sock.settimeout(timeout)
            sock.do_handshake()
            sock.settimeout(None)
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc.__class__.__name__
            LOGGER.warning("TLS handshake with %s failed: %s", self.client_address[0], reason)
            self.server.shutdown_request(sock)
            return False
        return True

    def _create_association(self) -> Association:
        server = self.server
        assoc = GatewayAssociation(self.ae, "acceptor", server.hooks)
        assoc._server = server
        assoc.dul = SpoolingDUL(assoc, self.ae.maximum_pdu_size, assoc.wake_event.set)
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
    """The association server: TLS handshakes happen per association, not in the accept loop."""

    daemon_threads = True

    def __init__(self, *args: Any, hooks: NodeHooks, **kwargs: Any) -> None:
        self.hooks = hooks
        kwargs["request_handler"] = GatewayRequestHandler
        super().__init__(*args, **kwargs)

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        listening = cast(socket.socket, self.socket)
        client, address = listening.accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            client = self.ssl_context.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
        return client, address
