"""``gazex demo``: the main job end to end, on the embedded defaults, in one command.

1. starts the gateway (the same runtime as ``gazex serve``: DICOM node, completion, worker,
   delivery) on a free loopback port, with its data in ``<out>/var``;
2. starts a local archive (a pynetdicom Storage SCP) that writes what it receives to
   ``<out>/archive``;
3. makes the bundled chest radiograph, a synthetic phantom with a lung nodule (not a patient),
   and sends it with dcmtk ``storescu`` (or pynetdicom's SCU when dcmtk is missing);
4. waits until the results are delivered, re-reads them and validates them (SOP classes,
   study, references; ``dciodvfy`` and ``dsrdump`` when installed);
5. prints a summary and writes ``<out>/overlay.png`` (boxes and trajectory from the SR as
   received) and ``<out>/summary.json``;
6. exits 0 when everything checked out, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pydicom
from pydicom.uid import UID

from gateway.cli import CommandError
from gateway.cli.worker import quiet_libraries
from gateway.config import ConfigError, Settings, load_settings
from gateway.db import DatabaseError
from gateway.demo.archive import RecordingArchive
from gateway.demo.results import validate_outputs
from gateway.pipeline import status
from gateway.render import Box, SRContent, draw_overlay, read_sr
from gateway.runtime import GatewayRuntime
from gateway.spool import SpoolError
from inference import builtin_checkpoints

LOGGER = logging.getLogger("gateway.demo")

DEMO_MODEL = "gazex-demo"
#: The bundled radiograph: phantom 0 of this seed, with exactly one finding, a lung nodule.
DEMO_SEED = 2024
DEMO_FINDING = "nodule"
RANDOM_MODEL_NOTE = (
    "builtin:gazex-demo is not bundled in this build, so the demo uses the smallest real checkpoint it can make: "
    "a tiny RANDOM-weight GazeX checkpoint (inference.testing.make_tiny_checkpoint) in {path}. It runs the real "
    "pipeline end to end, but a random model produces no meaningful findings: expect an empty or nonsensical "
    "report and few or no boxes."
)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="the main job end to end: gateway + local archive, send a chest radiograph, validate the results",
        description="Start the gateway and a local archive on loopback, send the bundled (synthetic) chest "
        "radiograph with a real DICOM client, wait for the SR, SEG and GSPS, validate them, print a summary "
        "and write an overlay PNG.",
    )
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder (default demo-output)")
    parser.add_argument(
        "--model", default=None, metavar="PATH|builtin:NAME", help="checkpoint (default: builtin:gazex-demo if bundled)"
    )
    parser.add_argument("--device", default="cpu", help="model device (default cpu)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the results (default 900)")
    parser.set_defaults(handler=run)


def choose_model(requested: str | None, out: Path) -> tuple[str, str]:
    """The model reference and one line about it for the operator."""
    if requested is not None:
        return requested, f"model: {requested} (as asked)"
    if DEMO_MODEL in builtin_checkpoints():
        return (
            f"builtin:{DEMO_MODEL}",
            f"model: builtin:{DEMO_MODEL}, the bundled demo model "
            "(trained on synthetic phantoms; demo weights, not for clinical use)",
        )
    tiny = out / "model" / "tiny-random"
    if not (tiny / "gazex.json").is_file():
        from inference import make_tiny_checkpoint  # heavy (torch, transformers): only when needed

        make_tiny_checkpoint(tiny)
    return str(tiny), "NOTE: " + RANDOM_MODEL_NOTE.format(path=tiny)


def make_input(folder: Path) -> tuple[Path, list[tuple[str, Box]]]:
    """The bundled radiograph as DICOM, and its ground-truth boxes (kind, box)."""
    from inference import PhantomConfig, write_phantom_dataset

    write_phantom_dataset(folder, seed=DEMO_SEED, count=1, formats=("dicom",), config=PhantomConfig.only(DEMO_FINDING))
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    entry = manifest["phantoms"][0]
    truth = [(str(f["label"]), tuple(float(v) for v in f["box"])) for f in entry["findings"]]
    return folder / entry["files"]["dicom"], truth  # type: ignore[return-value]


def demo_settings(out: Path, port: int, archive_port: int, model: str, device: str) -> Settings:
    try:
        return load_settings(
            overrides={
                "dicom": {"host": "127.0.0.1", "port": port, "shutdown_grace_seconds": 5},
                "storage": {"data_dir": str(out / "var"), "min_free_disk": "10MB"},
                # the demo is where the demo model belongs (its own archive, its own phantoms)
                "model": {"path": model, "device": device, "allow_demo": True},
                "destinations": {"archive": {"ae_title": "DEMOARCHIVE", "host": "127.0.0.1", "port": archive_port}},
                "completion": {"quiet_seconds": 1, "check_interval_seconds": 0.25},
                "delivery": {"base_delay_seconds": 1, "max_delay_seconds": 5, "poll_seconds": 0.25},
                "worker": {"poll_seconds": 0.25},
            },
            environ={},
        )
    except ConfigError as exc:
        raise CommandError(str(exc)) from None


def send(path: Path, port: int) -> str:
    """Send with dcmtk storescu (or pynetdicom when dcmtk is missing); returns how it was sent."""
    storescu = shutil.which("storescu")
    if storescu is not None:
        run = subprocess.run(
            [storescu, "-aet", "DEMOSENDER", "-aec", "GAZEX", "127.0.0.1", str(port), str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if run.returncode != 0:
            raise CommandError(f"storescu could not send {path}: {run.stderr.strip() or run.stdout.strip()}")
        return "dcmtk storescu"
    from pynetdicom import AE

    dataset = pydicom.dcmread(path)
    ae = AE(ae_title="DEMOSENDER")
    ae.add_requested_context(dataset.SOPClassUID, [str(dataset.file_meta.TransferSyntaxUID)])
    assoc = ae.associate("127.0.0.1", port, ae_title="GAZEX")
    if not assoc.is_established:
        raise CommandError(f"the gateway on 127.0.0.1:{port} did not accept the demo's association")
    try:
        response = assoc.send_c_store(dataset)
    finally:
        assoc.release()
    if response is None or int(response.get("Status", -1)) != 0:
        raise CommandError("the gateway did not store the demo image")
    return "pynetdicom's C-STORE SCU (dcmtk storescu is not installed)"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_results(runtime: GatewayRuntime, study_uid: str, timeout: float) -> status.StudyRow:
    assert runtime.engine is not None
    deadline = time.monotonic() + timeout
    last_state = ""
    while time.monotonic() < deadline:
        rows = status.studies(runtime.engine, limit=1, study_instance_uid=study_uid)
        if rows:
            row = rows[0]
            if row.state != last_state:
                print(f"  study state: {row.state}")
                last_state = row.state
            if row.state in ("delivered", "failed", "delivery dead", "not routed"):
                return row
        time.sleep(0.25)
    raise CommandError(f"no result within {timeout:.0f} s; see gazex studies/jobs/deliveries --config for {study_uid}")


def run(args: argparse.Namespace) -> int:
    quiet_libraries()
    for name in ("gateway", "inference"):
        logging.getLogger(name).setLevel(logging.WARNING)  # the demo prints its own progress
    out: Path = args.out
    for name in ("var", "archive", "input"):
        shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    print("GazeX Gateway demo: the main job end to end on this machine")
    model, model_line = choose_model(args.model, out)
    print(f"  {model_line}")
    source_path, truth = make_input(out / "input")
    source = pydicom.dcmread(source_path)
    print(
        f"  input: {source_path} - the bundled chest radiograph, a SYNTHETIC phantom (not a patient): "
        f"{source.Modality} {source.PhotometricInterpretation} {source.Rows}x{source.Columns}, ground truth "
        + "; ".join(f"{label} at [{', '.join(f'{v:.0f}' for v in box)}]" for label, box in truth)
    )
    port, archive_port = free_port(), free_port()
    settings = demo_settings(out, port, archive_port, model, args.device)
    archive = RecordingArchive(archive_port, ae_title="DEMOARCHIVE", folder=out / "archive")
    runtime = GatewayRuntime(settings)
    try:
        archive.start()
        print(f"  archive: DEMOARCHIVE on 127.0.0.1:{archive_port}, files in {out / 'archive'}")
        try:
            runtime.open()
            runtime.start()
        except (DatabaseError, SpoolError) as exc:
            raise CommandError(str(exc)) from None
        print(f"  gateway: GAZEX on 127.0.0.1:{port}, data in {out / 'var'} (SQLite, spool, outbox)")
        how = send(source_path, port)
        print(f"  sent {source_path.name} with {how}; the study completes after 1 s of quiet")
        row = wait_for_results(runtime, str(source.StudyInstanceUID), args.timeout)
        if row.state != "delivered":
            print(f"FAILED: the study ended as '{row.state}': {row.detail}")
            return 1
        received = [item for item in archive.snapshot() if item.study_instance_uid == str(source.StudyInstanceUID)]
    finally:
        runtime.stop(grace=2)
        runtime.close()
        archive.stop()
    files = [item.path for item in received if item.path is not None]
    validation = validate_outputs(files, source)
    sr_path = next(
        (item.path for item in received if item.sop_class_uid == str(UID("1.2.840.10008.5.1.4.1.1.88.34"))), None
    )
    content = read_sr(pydicom.dcmread(sr_path)) if sr_path is not None else SRContent()
    overlay = draw_overlay(source, content, out / "overlay.png", truth=truth)
    summary = _summary(content, received, truth, validation, model, overlay, time.monotonic() - started)
    (out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    _print_summary(summary, content, truth)
    if not validation.ok:
        print("FAILED: " + "; ".join(validation.problems))
        return 1
    print("demo passed: results delivered, re-read and valid")
    return 0


def _iou(a: Box, b: Box) -> float:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _summary(
    content: SRContent,
    received: list[Any],
    truth: list[tuple[str, Box]],
    validation: Any,
    model: str,
    overlay: Path,
    seconds: float,
) -> dict[str, Any]:
    return {
        "model": model,
        "seconds": round(seconds, 1),
        "report": content.report,
        "findings": [
            {"tracking_id": f.tracking_id, "finding": f.finding, "text": f.text, "box": f.box} for f in content.findings
        ],
        "absent": content.absent,
        "clue_boxes": len(content.clue_boxes),
        "trajectory_points": len(content.trajectory),
        "statements": [{"tracking_id": f.tracking_id, "text": f.text, "box": f.box} for f in content.statements],
        "ground_truth": [{"label": label, "box": box} for label, box in truth],
        "best_iou_with_truth": max(
            (_iou(f.box, box) for f in content.findings if f.box is not None for _, box in truth), default=0.0
        ),
        "outputs": [
            {
                "sop_class": UID(item.sop_class_uid).name,
                "sop_instance_uid": item.sop_instance_uid,
                "file": str(item.path),
            }
            for item in received
        ],
        "validation": {"ok": validation.ok, "problems": validation.problems, "notes": validation.notes},
        "overlay": str(overlay),
    }


def _print_summary(summary: dict[str, Any], content: SRContent, truth: list[tuple[str, Box]]) -> None:
    print()
    print(f"Results (in {summary['seconds']} s)")
    print(f"  report: {content.report or '(empty)'}")
    if content.findings:
        for finding in content.findings:
            where = f"box [{', '.join(f'{v:.0f}' for v in finding.box)}]" if finding.box else "no box"
            print(f"  finding {finding.tracking_id}: {finding.finding}, {where} - {finding.text}")
    else:
        print("  findings: none present")
    for statement in content.statements:
        print(f"  statement {statement.tracking_id.split()[0]}: {statement.text} (not a finding)")
    if content.completion_flag == "PARTIAL":
        print(f"  INCOMPLETE: {content.completion_description or 'see the report text'}")
    if content.absent:
        print(f"  absent: {', '.join(content.absent)}")
    print(
        f"  boxes: {sum(1 for f in content.findings if f.box)} finding box(es), {len(content.clue_boxes)} visual clue "
        f"box(es); trajectory: {len(content.trajectory)} fixation(s) in reading order"
    )
    if truth:
        print(f"  best overlap (IoU) of a finding box with the ground truth: {summary['best_iou_with_truth']:.2f}")
    print("  outputs received by the archive:")
    for output in summary["outputs"]:
        print(f"    {output['sop_class']:<48} {output['file']}")
    for note in summary["validation"]["notes"]:
        print(f"  {note}")
    print(f"  overlay: {summary['overlay']} (yellow: findings, cyan: visual clues, orange: trajectory, green: truth)")
    print("  summary: " + str(Path(summary["overlay"]).with_name("summary.json")))
