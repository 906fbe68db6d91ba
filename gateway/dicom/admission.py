"""Which associations the node accepts: allowed callers, called AE title, capacity (pure functions).

Rejections follow PS3.8 §9.3.4: an unknown caller or a wrong called AE title is rejected
permanently; a full node is rejected transiently, so the sender tries again later.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from gateway.config.settings import AllowedCaller

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: Resolves a host name to its addresses (an empty set when it does not resolve).
Resolver = Callable[[str], set[IPAddress]]

PERMANENT = 0x01
TRANSIENT = 0x02
SOURCE_SERVICE_USER = 0x01
SOURCE_SERVICE_PROVIDER_PRESENTATION = 0x03
DIAG_NO_REASON = 0x01
DIAG_CALLING_AE_NOT_RECOGNISED = 0x03
DIAG_CALLED_AE_NOT_RECOGNISED = 0x07
DIAG_LOCAL_LIMIT_EXCEEDED = 0x02


@dataclass(frozen=True)
class AssociationRequest:
    calling_ae_title: str
    called_ae_title: str
    peer_address: str


@dataclass(frozen=True)
class Rejection:
    """An A-ASSOCIATE-RJ: result, source and diagnostic (PS3.8 Table 9-21), and why, for the log."""

    result: int
    source: int
    diagnostic: int
    reason: str
    #: the reason's label for metrics and audit (one of :data:`gateway.events.REJECTION_REASONS`)
    category: str = "admission_error"

    @property
    def kind(self) -> str:
        return "permanent" if self.result == PERMANENT else "transient"


def parse_address(text: str) -> IPAddress | None:
    """An IP address; an IPv4-mapped IPv6 address becomes IPv4; None when not an address."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def resolve_host(name: str) -> set[IPAddress]:
    """The addresses of a host name by the system resolver; empty when it does not resolve."""
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return set()
    found: set[IPAddress] = set()
    for info in infos:
        address = parse_address(str(info[4][0]))
        if address is not None:
            found.add(address)
    return found


def host_matches(rule_host: str | None, peer: IPAddress | None, resolve: Resolver) -> bool:
    """Does a caller connecting from ``peer`` satisfy a rule's host (address, CIDR, or name)?"""
    if rule_host is None:
        return True
    if peer is None:
        return False
    if "/" in rule_host:
        network = ipaddress.ip_network(rule_host, strict=False)
        candidates: Iterable[IPAddress] = [peer]
        if isinstance(peer, ipaddress.IPv4Address) and network.version == 6:
            candidates = [ipaddress.IPv6Address(f"::ffff:{peer}")]
        return any(candidate in network for candidate in candidates)
    address = parse_address(rule_host)
    if address is not None:
        return address == peer
    return peer in resolve(rule_host)


def matching_caller(
    request: AssociationRequest, callers: Sequence[AllowedCaller], resolve: Resolver
) -> AllowedCaller | None:
    """The first allowed-caller entry the request satisfies (AE title and host), or None."""
    peer = parse_address(request.peer_address)
    calling = request.calling_ae_title.strip()
    for caller in callers:
        if caller.ae_title not in ("*", calling):
            continue
        if host_matches(caller.host, peer, resolve):
            return caller
    return None


def admission(
    request: AssociationRequest,
    *,
    ae_titles: Sequence[str],
    require_called_ae_title: bool,
    allowed_callers: Sequence[AllowedCaller],
    reject_unknown_callers: bool,
    active_associations: int,
    max_associations: int,
    resolve: Resolver = resolve_host,
) -> Rejection | None:
    """None to accept, or the rejection to send.  Checks callers, then the called AE title, then capacity."""
    if reject_unknown_callers and matching_caller(request, allowed_callers, resolve) is None:
        return Rejection(
            PERMANENT,
            SOURCE_SERVICE_USER,
            DIAG_CALLING_AE_NOT_RECOGNISED,
            f"calling AE title {request.calling_ae_title!r} from {request.peer_address} is not an allowed caller",
            "unknown_caller",
        )
    if require_called_ae_title and request.called_ae_title.strip() not in ae_titles:
        return Rejection(
            PERMANENT,
            SOURCE_SERVICE_USER,
            DIAG_CALLED_AE_NOT_RECOGNISED,
            f"called AE title {request.called_ae_title.strip()!r} is not ours ({', '.join(ae_titles)})",
            "called_ae_title",
        )
    if active_associations >= max_associations:
        return Rejection(
            TRANSIENT,
            SOURCE_SERVICE_PROVIDER_PRESENTATION,
            DIAG_LOCAL_LIMIT_EXCEEDED,
            f"{active_associations} associations are open, the maximum is {max_associations}",
            "capacity",
        )
    return None
