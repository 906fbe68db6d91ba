"""Phantom generation speed on one core: our direct low-resolution render beside the peer way.

The peer is the obvious way to get a training-size image: render the phantom at its native
resolution (about 2000-2500 pixels) and downsample it (PIL, box filter).  Ours rasterises the
same geometry directly on the small grid.  Both include generating the phantom (anatomy,
findings, ground truth, report and scanpath); the same phantoms are timed for both.

    .venv/bin/python -m benchmarks.phantoms [--count 40] [--peer-count 6]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the figure claims

import numpy as np
from PIL import Image

from benchmarks._table import format_table, machine_line, median
from inference.demo import generate_phantom
from inference.demo.dicom import phantom_dataset

SEED = 2024


def _ours(count: int, size: int) -> list[float]:
    times = []
    for index in range(count):
        started = time.perf_counter()
        generate_phantom(SEED, index).render(size)
        times.append(time.perf_counter() - started)
    return times


def _peer(count: int, size: int) -> list[float]:
    times = []
    for index in range(count):
        started = time.perf_counter()
        phantom = generate_phantom(SEED, index)
        native = phantom.render(None)
        scale = size / max(native.shape)
        target = (max(1, round(native.shape[1] * scale)), max(1, round(native.shape[0] * scale)))
        np.asarray(Image.fromarray(native).resize(target, Image.Resampling.BOX))
        times.append(time.perf_counter() - started)
    return times


def _generate_only(count: int) -> list[float]:
    times = []
    for index in range(count):
        started = time.perf_counter()
        generate_phantom(SEED, index)
        times.append(time.perf_counter() - started)
    return times


def _dicom(count: int) -> list[float]:
    times = []
    for index in range(count):
        started = time.perf_counter()
        phantom_dataset(generate_phantom(SEED, index))
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=40, help="phantoms per low-resolution measurement")
    parser.add_argument("--peer-count", type=int, default=6, help="phantoms for the native-resolution measurements")
    args = parser.parse_args()

    rows: list[list[object]] = []
    generate_phantom(SEED + 1, 0).render(None)  # warm up numpy and PIL before timing
    generate_phantom(SEED + 1, 1).render(256)

    def add(what: str, size: str, times: list[float]) -> None:
        per = median(times)
        rows.append([what, size, len(times), per * 1000.0, 60.0 / per])

    add("generate only (geometry, ground truth, report, scanpath)", "-", _generate_only(args.count))
    for size in (256, 384, 512):
        add("ours: generate + direct render", str(size), _ours(args.count, size))
    for size in (256, 512):
        add("peer: generate + native render + downsample", str(size), _peer(args.peer_count, size))
        add("ours, same phantoms as the peer", str(size), _ours(args.peer_count, size))
    add("DICOM dataset at native size (render + quantise)", "native", _dicom(args.peer_count))

    print(machine_line())
    print(format_table(["path", "longer side (px)", "phantoms", "median ms / phantom", "phantoms / minute"], rows))


if __name__ == "__main__":
    main()
