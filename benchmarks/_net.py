"""Loopback ports for the benchmarks' peers: pick a free one, and wait until a process listens on it."""

from __future__ import annotations

import socket
import subprocess
import time


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_listens(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:PORT.

    A connection whose own address is the one it dialled is not an answer: with nothing
    listening, Linux may give the probe the very port it dials as its ephemeral source port,
    and the socket then connects to itself (TCP simultaneous open). The ports handed out here
    come from that same ephemeral range, so a wait loop that probes often meets this now and then.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        if sock.connect_ex(("127.0.0.1", port)) != 0:
            return False
        return bool(sock.getsockname() != sock.getpeername())


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None, timeout: float = 120) -> None:
    """Return once something listens on 127.0.0.1:PORT; raise when PROCESS exits first or TIMEOUT passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with status {process.returncode} before listening")
        if port_listens(port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout} s")
