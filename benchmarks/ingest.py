"""Ingest throughput: ``gazex serve`` beside dcmtk ``storescp`` and Orthanc, measured in one run.

dcmtk ``storescu`` sends N copies of the 7.2 MB chest CR (``+II``: a new SOP Instance UID for
each) to each receiver on a loopback port, once over one association and once over four
concurrent ones.  For each receiver the table shows MB/s, images/s, the p50/p99 store latency
as storescu saw it (request sent to response received), and the receiver's peak RSS.

* ``gazex serve``: fsync of every file and its directory, SQLite index with
  ``synchronous=FULL``, success only after both (the durability promise, unchanged).  Its
  pipeline runs, with the FakeEngine and a completion quiet time longer than the run: the
  figure is the receive path's, not an analysis competing with it for the cores, and the RSS
  is the node's (the bundled model and torch add about 400 MB to a process that analyses).
* ``storescp``: dcmtk's defaults (``storescp -od DIR PORT``: no fsync, one association at a time).
* Orthanc: its default storage settings (``SyncStorageArea`` on, SQLite index) in a temporary
  directory, HTTP off.

STOW-RS rows (``--protocols stow-rs``): dicomweb-client's ``store_instances`` posts the same
instances, one per request (a new SOP Instance UID each), from as many client threads as there
are "associations", to ``gazex serve``'s ``POST /dicomweb/studies`` (bearer token, the same
durability promise) and to Orthanc's own STOW-RS (the Debian ``orthanc-dicomweb`` plugin, same
storage settings).  Latency: request sent to Store Instances Response received.

Usage::

    .venv/bin/python benchmarks/ingest.py                    # N=144: ~1 GB per receiver and run
    .venv/bin/python benchmarks/ingest.py --count 40 --peers storescp
    .venv/bin/python benchmarks/ingest.py --count 2 --peers storescp --associations 1   # smoke test
    .venv/bin/python benchmarks/ingest.py --count 20 --protocols stow-rs --peers orthanc   # STOW-RS only

Target (issue 3): at least 1.5x storescp's MB/s, and gazex's peak RSS under 400 MB while
receiving 1 GB.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks._net import free_port, wait_for_port  # noqa: E402
from benchmarks._table import format_table, machine_line, percentile  # noqa: E402

LOG_CONFIG = """\
log4cplus.rootLogger = INFO, console
log4cplus.appender.console = log4cplus::ConsoleAppender
log4cplus.appender.console.layout = log4cplus::PatternLayout
log4cplus.appender.console.layout.ConversionPattern = %D{%Y-%m-%d %H:%M:%S.%q} %m%n
"""
RSS_TARGET_MB = 400.0
RATIO_TARGET = 1.5


C_STORE = "C-STORE"
STOW_RS = "STOW-RS"
PROTOCOLS = {"c-store": C_STORE, "stow-rs": STOW_RS}
DICOMWEB_PLUGIN_DIRS = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))
BENCH_PASSWORD = "benchmark password, not a secret"  # noqa: S105 - a throw-away account of the run


@dataclass
class Measurement:
    receiver: str
    associations: int
    sent: int
    stored: int
    seconds: float
    bytes_per_instance: int
    latencies_ms: list[float] = field(default_factory=list)
    peak_rss_mb: float = float("nan")
    error: str = ""
    protocol: str = C_STORE

    @property
    def is_gazex(self) -> bool:
        return self.receiver.startswith("gazex serve")

    @property
    def mb_per_s(self) -> float:
        return self.stored * self.bytes_per_instance / 1e6 / self.seconds if self.seconds else float("nan")

    @property
    def images_per_s(self) -> float:
        return self.stored / self.seconds if self.seconds else float("nan")


def find_tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    if found is None:
        raise SystemExit(f"{name} is not installed (apt-get install -y dcmtk orthanc)")
    return found


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM) so far, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def stop(process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Receiver:
    name: str
    ae_title: str
    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    #: STOW-RS: the DICOMweb base URL and the request headers (authentication)
    url: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    def stored(self, sent: int) -> int:
        return sent


def start_gazex(workdir: Path, stow: bool = False) -> Receiver:
    port = free_port()
    http_port = free_port()
    config = workdir / "gazex.yaml"
    config.write_text(
        json.dumps(
            {
                "dicom": {"host": "127.0.0.1", "port": port, "max_associations": 8},
                "storage": {"data_dir": str(workdir / "data"), "min_free_disk": "200MB"},
                # the receive path alone: the pipeline runs, but no study completes during the
                # measurement and no model is loaded into the process (see the module docstring)
                "model": {"path": "fake"},
                "completion": {"quiet_seconds": 3600, "max_wait_seconds": 3600},
                "http": {"enabled": stow, "port": http_port},
                "dicomweb": {"enabled": stow, "callers": {"bench": "BENCH"}},
            }
        ),
        encoding="utf-8",
    )
    log = (workdir / "gazex.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "--log-level", "WARNING", "serve", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
        env={k: v for k, v in os.environ.items() if not (k.startswith("GAZEX_") and "__" in k)},
    )
    wait_for_port(port, process)
    if not stow:
        return Receiver("gazex serve", "GAZEX", process, port, workdir)
    wait_for_port(http_port, process)
    gazex = [sys.executable, "-m", "gateway.cli"]
    subprocess.run(
        [*gazex, "users", "add", "bench", "--role", "viewer", "--password-stdin", "--config", str(config)],
        input=BENCH_PASSWORD + "\n", text=True, check=True, capture_output=True, cwd=REPO_ROOT,
    )  # fmt: skip
    token = subprocess.run(
        [*gazex, "users", "token", "bench", "--name", "benchmark", "--config", str(config)],
        text=True, check=True, capture_output=True, cwd=REPO_ROOT,
    ).stdout.strip()  # fmt: skip
    url = f"http://127.0.0.1:{http_port}/dicomweb"
    return Receiver(
        "gazex serve STOW-RS", "GAZEX", process, http_port, workdir, url, {"Authorization": f"Bearer {token}"}
    )


def start_storescp(workdir: Path) -> Receiver:
    port = free_port()
    out = workdir / "storescp"
    out.mkdir()
    log = (workdir / "storescp.log").open("wb")
    process = subprocess.Popen(
        [find_tool("storescp"), "-od", str(out), str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    wait_for_port(port, process)
    return Receiver("dcmtk storescp", "STORESCP", process, port, workdir)


def dicomweb_plugin() -> Path:
    """Orthanc's DICOMweb plugin (Debian ``orthanc-dicomweb``)."""
    for folder in DICOMWEB_PLUGIN_DIRS:
        found = sorted(folder.glob("libOrthancDicomWeb.so*")) if folder.is_dir() else []
        if found:
            return found[0]
    raise SystemExit("Orthanc's DICOMweb plugin is not installed (apt-get install -y orthanc-dicomweb)")


def start_orthanc(workdir: Path, stow: bool = False) -> Receiver:
    port = free_port()
    http_port = free_port()
    config = workdir / "orthanc.json"
    settings: dict[str, object] = {
        "Name": "gazex-benchmark",
        "StorageDirectory": str(workdir / "orthanc-storage"),
        "IndexDirectory": str(workdir / "orthanc-index"),
        "DicomAet": "ORTHANC",
        "DicomPort": port,
        "HttpServerEnabled": stow,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [],
    }
    if stow:
        settings["Plugins"] = [str(dicomweb_plugin())]
        settings["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/", "EnableWado": False}
    config.write_text(json.dumps(settings), encoding="utf-8")
    log = (workdir / "orthanc.log").open("wb")
    process = subprocess.Popen([find_tool("Orthanc"), str(config)], stdout=log, stderr=subprocess.STDOUT)
    wait_for_port(port, process)
    if not stow:
        return Receiver("Orthanc", "ORTHANC", process, port, workdir)
    wait_for_port(http_port, process)
    return Receiver(
        "Orthanc STOW-RS", "ORTHANC", process, http_port, workdir, f"http://127.0.0.1:{http_port}/dicom-web"
    )


STARTERS = {"gazex": start_gazex, "storescp": start_storescp, "orthanc": start_orthanc}
STOW_STARTERS = {"gazex": start_gazex, "orthanc": start_orthanc}


def parse_storescu_log(text: str) -> tuple[int, list[float]]:
    """(successes, per-instance latencies in ms) from a storescu log with millisecond timestamps."""
    successes = 0
    latencies: list[float] = []
    sent_at: datetime | None = None
    for line in text.splitlines():
        if "Sending Store Request" in line:
            sent_at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f")
        elif "Received Store Response" in line and sent_at is not None:
            answered = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f")
            if "(Success)" in line:
                successes += 1
                latencies.append((answered - sent_at).total_seconds() * 1000)
            sent_at = None
    return successes, latencies


def send(receiver: Receiver, source: Path, count: int, associations: int, workdir: Path) -> Measurement:
    storescu = find_tool("storescu")
    log_config = workdir / "storescu-log.cfg"
    log_config.write_text(LOG_CONFIG, encoding="utf-8")
    shares = [count // associations + (1 if i < count % associations else 0) for i in range(associations)]
    logs = [workdir / f"storescu-{i}.log" for i in range(associations)]
    started = time.perf_counter()
    senders = []
    for share, log in zip(shares, logs, strict=True):
        command = [storescu, "-lc", str(log_config), "-aet", "BENCH", "-aec", receiver.ae_title]
        command += ["--repeat", str(share), "+II", "127.0.0.1", str(receiver.port), str(source)]
        with log.open("wb") as output:  # the log4cplus console appender writes to stdout
            senders.append(subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT))
    codes = [sender.wait() for sender in senders]
    errors = [f"storescu exited {code}" for code in codes if code != 0]
    seconds = time.perf_counter() - started
    stored = 0
    latencies: list[float] = []
    for log in logs:
        successes, times = parse_storescu_log(log.read_text(errors="replace"))
        stored += successes
        latencies += times
    measurement = Measurement(
        receiver=receiver.name,
        associations=associations,
        sent=count,
        stored=stored,
        seconds=seconds,
        bytes_per_instance=source.stat().st_size,
        latencies_ms=latencies,
        peak_rss_mb=peak_rss_mb(receiver.process.pid),
    )
    if errors or stored != count:
        measurement.error = "; ".join(errors) or f"{count - stored} not acknowledged"
    return measurement


def send_stow(receiver: Receiver, source: Path, count: int, associations: int) -> Measurement:
    """STOW-RS with dicomweb-client: one instance per request, ``associations`` client threads."""
    import pydicom
    from dicomweb_client import DICOMwebClient
    from pydicom.uid import generate_uid
    from requests import RequestException

    template = pydicom.dcmread(source)
    shares = [count // associations + (1 if i < count % associations else 0) for i in range(associations)]

    def post(share: int) -> tuple[int, list[float], list[str]]:
        client = DICOMwebClient(receiver.url, headers=receiver.headers, timeout=120)
        dataset = copy.deepcopy(template)  # its own File Meta Information too
        stored, latencies, errors = 0, [], []
        for _ in range(share):
            dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            sent = time.perf_counter()
            try:
                response = client.store_instances([dataset])
            except RequestException as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:120])
                continue
            # Orthanc answers an empty Failed SOP Sequence when nothing failed
            if not response.get("FailedSOPSequence") and len(response.get("ReferencedSOPSequence") or []) == 1:
                stored += 1
                latencies.append((time.perf_counter() - sent) * 1000)
        return stored, latencies, errors

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=associations) as pool:
        results = list(pool.map(post, shares))
    seconds = time.perf_counter() - started
    measurement = Measurement(
        receiver=receiver.name,
        associations=associations,
        sent=count,
        stored=sum(stored for stored, _, _ in results),
        seconds=seconds,
        bytes_per_instance=source.stat().st_size,
        latencies_ms=[latency for _, latencies, _ in results for latency in latencies],
        peak_rss_mb=peak_rss_mb(receiver.process.pid),
        protocol=STOW_RS,
    )
    errors = [error for _, _, found in results for error in found]
    if errors or measurement.stored != count:
        measurement.error = "; ".join(errors[:1]) or f"{count - measurement.stored} not acknowledged"
    return measurement


def gazex_indexed(workdir: Path) -> int:
    database = workdir / "data" / "gazex.db"
    with sqlite3.connect(database) as connection:
        return int(connection.execute("SELECT count(*) FROM instances").fetchone()[0])


def run_scenario(
    name: str, source: Path, count: int, associations: int, scratch: Path, protocol: str = C_STORE
) -> Measurement:
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-{associations}-", dir=scratch))
    stow = protocol == STOW_RS
    receiver = STOW_STARTERS[name](workdir, stow=True) if stow else STARTERS[name](workdir)
    try:
        if stow:
            measurement = send_stow(receiver, source, count, associations)
        else:
            measurement = send(receiver, source, count, associations, workdir)
        if name == "gazex" and not measurement.error:
            indexed = gazex_indexed(workdir)
            if indexed != measurement.stored:
                measurement.error = f"{indexed} indexed of {measurement.stored} acknowledged"
        return measurement
    finally:
        stop(receiver.process)
        shutil.rmtree(workdir, ignore_errors=True)


def report(measurements: Sequence[Measurement], count: int, source: Path) -> str:
    ours_by_key = {(m.protocol, m.associations): m for m in measurements if m.is_gazex}
    by_key = {(m.receiver, m.associations): m for m in measurements}
    headers = [
        "receiver", "protocol", "associations", "instances", "MB/s", "images/s", "p50 ms", "p99 ms", "peak RSS MB",
        "gazex MB/s ÷ this",
    ]  # fmt: skip
    rows = []
    for m in measurements:
        ours = ours_by_key.get((m.protocol, m.associations))
        ratio = ours.mb_per_s / m.mb_per_s if ours and m.mb_per_s else float("nan")
        rows.append(
            [
                m.receiver + (f" ({m.error})" if m.error else ""),
                m.protocol,
                m.associations,
                f"{m.stored}/{m.sent}",
                m.mb_per_s,
                m.images_per_s,
                percentile(m.latencies_ms, 50),
                percentile(m.latencies_ms, 99),
                m.peak_rss_mb,
                "1.00x" if m.is_gazex else f"{ratio:.2f}x",
            ]
        )
    size_mb = source.stat().st_size / 1e6
    lines = [
        f"Ingest: {count} x {source.name} ({size_mb:.1f} MB, new SOP Instance UID each) "
        "sent over loopback by dcmtk storescu (C-STORE) and dicomweb-client (STOW-RS, one instance per request)",
        machine_line(),
        "",
        format_table(headers, rows),
        "",
    ]
    for associations in sorted({m.associations for m in measurements}):
        ours = by_key.get(("gazex serve", associations))
        peer = by_key.get(("dcmtk storescp", associations))
        if ours and peer and peer.mb_per_s:
            ratio = ours.mb_per_s / peer.mb_per_s
            verdict = "met" if ratio >= RATIO_TARGET else "NOT met"
            lines.append(
                f"{associations} association(s): gazex / storescp = {ratio:.2f}x (target >= {RATIO_TARGET}x: {verdict})"
            )
        stow_ours = by_key.get(("gazex serve STOW-RS", associations))
        stow_peer = by_key.get(("Orthanc STOW-RS", associations))
        if stow_ours and stow_peer and stow_peer.mb_per_s:
            lines.append(
                f"{associations} client(s), STOW-RS: gazex / Orthanc = {stow_ours.mb_per_s / stow_peer.mb_per_s:.2f}x"
            )
    gazex_runs = [m for m in measurements if m.receiver == "gazex serve"]
    if gazex_runs:
        received_gb = max(m.stored for m in gazex_runs) * source.stat().st_size / 1e9
        peak = max(m.peak_rss_mb for m in gazex_runs)
        verdict = "met" if peak < RSS_TARGET_MB else "NOT met"
        lines.append(
            f"gazex peak RSS {peak:.0f} MB while receiving {received_gb:.2f} GB per run "
            f"(target < {RSS_TARGET_MB:.0f} MB while receiving 1 GB: {verdict if received_gb >= 1 else 'run N>=139'})"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=144, help="instances per run (default 144: ~1 GB)")
    parser.add_argument(
        "--peers", default="storescp,orthanc", help="comma-separated peers beside gazex: storescp, orthanc"
    )
    parser.add_argument("--associations", default="1,4", help="comma-separated association counts (default 1,4)")
    parser.add_argument(
        "--protocols",
        default="c-store,stow-rs",
        help="comma-separated: c-store (beside the peers), stow-rs (beside Orthanc's DICOMweb plugin, when orthanc "
        "is a peer)",
    )
    parser.add_argument("--source", type=Path, help="the DICOM file to send (default: the 7.2 MB chest CR)")
    parser.add_argument("--scratch", type=Path, help="where receivers keep their data (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.source is None:
        from pydicom.data import get_testdata_file

        found = get_testdata_file("RG1_UNCR.dcm")
        if found is None:
            raise SystemExit("the chest CR RG1_UNCR.dcm is missing: pip install pydicom-data")
        args.source = Path(str(found))
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = [p for p in peers if p not in STARTERS or p == "gazex"]
    if unknown:
        raise SystemExit(f"unknown peer(s) {', '.join(unknown)}: choose from storescp, orthanc")
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    if not protocols or any(p not in PROTOCOLS for p in protocols):
        raise SystemExit(f"--protocols takes {', '.join(PROTOCOLS)}")
    counts = [int(a) for a in args.associations.split(",")]
    scenarios = []
    for associations in counts:
        if "c-store" in protocols:
            scenarios += [(name, associations, C_STORE) for name in ["gazex", *peers]]
        if "stow-rs" in protocols:
            stow_peers = [name for name in peers if name in STOW_STARTERS]
            scenarios += [(name, associations, STOW_RS) for name in ["gazex", *stow_peers]]
    scratch = Path(tempfile.mkdtemp(prefix="gazex-ingest-bench-", dir=args.scratch))
    measurements = []
    try:
        for name, associations, protocol in scenarios:
            measurement = run_scenario(name, args.source, args.count, associations, scratch, protocol)
            print(
                f"  {measurement.receiver:<21} x{associations}: {measurement.mb_per_s:7.1f} MB/s"
                f"{'  ' + measurement.error if measurement.error else ''}",
                file=sys.stderr,
                flush=True,
            )
            measurements.append(measurement)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(report(measurements, args.count, args.source))
    return 1 if any(m.error for m in measurements) else 0


if __name__ == "__main__":
    raise SystemExit(main())
