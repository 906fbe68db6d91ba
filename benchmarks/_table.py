"""Printing benchmark results: our figure beside a peer's, measured in the same run."""

from __future__ import annotations

import math
import os
import platform
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) of ``values`` by linear interpolation."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100.0
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    fraction = position - lower
    return ordered[lower] * (1 - fraction) + ordered[upper] * fraction


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table, so it can be pasted into a closing note as it is."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return "n/a"
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    text_rows = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text_rows)) if text_rows else len(h) for i, h in enumerate(headers)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in text_rows]
    return "\n".join(lines)


def machine_line() -> str:
    """One line describing where the figures were measured."""
    return f"{platform.node()} · {platform.machine()} · {os.cpu_count()} CPUs · Python {platform.python_version()}"
