"""What connections that are not admitted yet cost ``gazex serve``: memory, threads, lifetimes, log lines.

The attacks of the outside test (issue 26), each against a fresh ``gazex serve`` on a loopback port:

* **declared 16 MiB**: N connections each send an A-ASSOCIATE-RQ header declaring just under
  16 MiB and 16 bytes of its body, then nothing;
* **declared 256 KiB**: the same, declaring just under the 256 KiB the node accepts (the most a
  connection may make it wait for);
* **stalled header**: one connection sends 3 bytes of a PDU header, then nothing;
* **garbage**: one connection sends a P-DATA-TF header declaring 4 GiB, then 1 MiB of zeros.

For each the table shows the node's RSS and threads before and at their peak while the
connections are open, how many connections the node closed within ``--max-wait`` seconds and
the median lifetime of those, and the log lines the attack caused.  ``--source LABEL=DIR`` runs
the same attacks against another checkout (for example the code before a change, exported with
``git archive``), so the table compares them in one run.  The node uses the default timeouts
(ACSE 30 s, admission 10 s, network 120 s); the limits on pending connections are raised to
N + 14 so all N are held at once (a checkout without these settings is run without them).
The pipeline runs with the FakeEngine, so no model is loaded into the process.

Usage::

    .venv/bin/python benchmarks/pre_admission.py                       # N=50, this checkout
    .venv/bin/python benchmarks/pre_admission.py --source before=/tmp/gazex-main --source after=.
    .venv/bin/python benchmarks/pre_admission.py --connections 4 --max-wait 12 --attacks stalled   # smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks._net import free_port  # noqa: E402
from benchmarks._table import format_table, machine_line, median  # noqa: E402

ATTACKS = ("declared-16MiB", "declared-256KiB", "stalled", "garbage")


@dataclass
class Result:
    source: str
    attack: str
    connections: int
    rss_before_mb: float
    rss_peak_mb: float
    threads_before: int
    threads_peak: int
    closed: int
    median_lifetime_s: float
    log_lines: int


def stats(pid: int) -> tuple[float, int]:
    """(RSS in MB, threads) of a process."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return int(fields["VmRSS"][0]) / 1024, int(fields["Threads"][0])


def config_text(source: Path, directory: Path, port: int, connections: int) -> str:
    settings = (source / "gateway" / "config" / "settings.py").read_text(encoding="utf-8")
    limits = ""
    if "max_pending_connections" in settings:
        limits = f"  max_pending_connections: {connections + 14}\n  max_pending_per_address: {connections + 14}\n"
    return (
        f"dicom:\n  host: 127.0.0.1\n  port: {port}\n  shutdown_grace_seconds: 1\n{limits}"
        f"storage:\n  data_dir: {directory / 'data'}\n  min_free_disk: 1MB\n"
        "model:\n  path: fake\n"
        "completion:\n  quiet_seconds: 3600\n  max_wait_seconds: 3600\n"
    )


class Serve:
    """``gazex serve`` from ``source`` on a free port."""

    def __init__(self, source: Path, scratch: Path, connections: int) -> None:
        self.port = free_port()
        directory = Path(tempfile.mkdtemp(dir=scratch))
        config = directory / "gazex.yaml"
        config.write_text(config_text(source, directory, self.port, connections), encoding="utf-8")
        self.log_path = directory / "serve.log"
        environment = {k: v for k, v in os.environ.items() if not (k.startswith("GAZEX_") and "__" in k)}
        environment["PYTHONPATH"] = str(source)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "--log-level", "INFO", "serve", "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                cwd=source,
            )
        deadline = time.monotonic() + 60
        while "gazex serve ready" not in self.log_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gazex serve from {source} did not start:\n{self.log_text()[-2000:]}")
            time.sleep(0.1)
        time.sleep(1.0)  # let start-up settle before the baseline

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_lines(self) -> int:
        return len(self.log_text().splitlines())

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)


def open_connections(port: int, count: int, payload: bytes) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        with contextlib.suppress(OSError):  # closed by the node already: it is counted as closed below
            sock.sendall(payload)
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


def watch(serve: Serve, sockets: list[socket.socket], max_wait: float) -> tuple[float, int, list[float]]:
    """Until every socket is closed by the node or ``max_wait`` passed: peak RSS, peak threads, lifetimes."""
    started = time.monotonic()
    peak_rss, peak_threads = stats(serve.process.pid)
    open_sockets = set(sockets)
    lifetimes: list[float] = []
    while open_sockets and time.monotonic() - started < max_wait:
        readable, _, _ = select.select(list(open_sockets), [], [], 0.1)
        for sock in readable:
            try:
                data = sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                lifetimes.append(time.monotonic() - started)
                open_sockets.discard(sock)
        rss, threads = stats(serve.process.pid)
        peak_rss, peak_threads = max(peak_rss, rss), max(peak_threads, threads)
    for sock in sockets:
        sock.close()
    return peak_rss, peak_threads, lifetimes


def run_attack(label: str, source: Path, attack: str, connections: int, max_wait: float, scratch: Path) -> Result:
    serve = Serve(source, scratch, connections)
    try:
        rss_before, threads_before = stats(serve.process.pid)
        lines_before = serve.log_lines()
        count = connections if attack.startswith("declared") else 1
        if attack == "declared-16MiB":
            payload = struct.pack(">BBL", 0x01, 0, 0x00FFFFF0) + b"\x01" * 16
        elif attack == "declared-256KiB":
            payload = struct.pack(">BBL", 0x01, 0, (256 << 10) - 16) + b"\x01" * 16
        elif attack == "stalled":
            payload = b"\x01\x00\x00"
        else:
            payload = struct.pack(">BBL", 0x04, 0, 0xFFFFFFF0) + b"\x00" * (1 << 20)
        sockets = open_connections(serve.port, count, payload)
        peak_rss, peak_threads, lifetimes = watch(serve, sockets, max_wait)
        time.sleep(0.5)  # the last log lines
        return Result(
            source=label,
            attack=attack,
            connections=count,
            rss_before_mb=rss_before,
            rss_peak_mb=peak_rss,
            threads_before=threads_before,
            threads_peak=peak_threads,
            closed=len(lifetimes),
            median_lifetime_s=median(lifetimes),
            log_lines=serve.log_lines() - lines_before,
        )
    finally:
        serve.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--connections", type=int, default=50, help="connections per 'declared' attack (50)")
    parser.add_argument("--max-wait", type=float, default=45.0, help="seconds to wait for the node to close them (45)")
    parser.add_argument("--source", action="append", default=[], metavar="LABEL=DIR", help="a checkout to run")
    parser.add_argument("--attacks", nargs="+", choices=ATTACKS, default=list(ATTACKS))
    parser.add_argument("--scratch", type=Path, default=None, help="where data and logs go (a temporary folder)")
    args = parser.parse_args(argv)
    sources = [tuple(item.split("=", 1)) for item in args.source] or [("this", str(REPO_ROOT))]
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="gazex-pre-admission-"))
    results = [
        run_attack(label, Path(directory).resolve(), attack, args.connections, args.max_wait, scratch)
        for label, directory in sources
        for attack in args.attacks
    ]
    headers = [
        "source",
        "attack",
        "connections",
        "RSS before MB",
        "RSS peak MB",
        "threads before",
        "threads peak",
        f"closed within {args.max_wait:g} s",
        "median lifetime s",
        "log lines",
    ]
    rows = [
        [
            r.source,
            r.attack,
            r.connections,
            r.rss_before_mb,
            r.rss_peak_mb,
            r.threads_before,
            r.threads_peak,
            r.closed,
            r.median_lifetime_s,
            r.log_lines,
        ]
        for r in results
    ]
    print(machine_line())
    print(format_table(headers, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
