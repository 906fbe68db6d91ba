"""The generated parts of the documentation: Markdown blocks between markers, rendered from the code.

A page holds hand-written text and generated blocks::

    <!-- generated: storage-scp -->
    | SOP Class | UID |
    ...
    <!-- end: storage-scp -->

:func:`render_page` replaces what lies between each pair of markers with the block of that
name; the rest of the page is kept as it is.  ``python -m gateway.docgen --write`` rewrites the
pages; ``--check`` (the default) only says which page differs.  ``tests/docs`` fail when a page
and the code disagree.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: The command that brings the pages up to date (quoted by the drift tests).
WRITE_COMMAND = "python -m gateway.docgen --write"

_START = re.compile(r"^<!-- generated: ([a-z0-9-]+) -->$")
_END = re.compile(r"^<!-- end: ([a-z0-9-]+) -->$")


class MarkerError(ValueError):
    """A page's markers do not pair up, or do not name exactly the blocks the generator makes."""


@dataclass(frozen=True)
class Page:
    """A documentation page (relative to the repository root) and the function that makes its blocks."""

    path: str
    blocks: Callable[[], Mapping[str, str]]


def _pages() -> list[Page]:
    from gateway.config.reference import reference_blocks
    from gateway.conformance import conformance_blocks

    return [
        Page("docs/conformance.md", conformance_blocks),
        Page("docs/configuration-reference.md", reference_blocks),
    ]


def render_page(text: str, blocks: Mapping[str, str], *, where: str = "the page") -> str:
    """``text`` with every generated block replaced; MarkerError names a missing, unknown or unclosed block."""
    out: list[str] = []
    seen: list[str] = []
    inside: str | None = None
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        bare = line.rstrip("\r\n")
        start, end = _START.match(bare), _END.match(bare)
        if inside is None:
            out.append(line)
            if end is not None:
                raise MarkerError(f"{where}:{number}: <!-- end: {end.group(1)} --> without its start marker")
            if start is not None:
                inside = start.group(1)
                if inside not in blocks:
                    known = ", ".join(sorted(blocks))
                    raise MarkerError(f"{where}:{number}: no generated block is called {inside!r} (known: {known})")
                if inside in seen:
                    raise MarkerError(f"{where}:{number}: the block {inside!r} appears twice")
                seen.append(inside)
                body = blocks[inside].strip("\n")
                out.append(body + "\n" if body else "")
        elif end is not None:
            if end.group(1) != inside:
                raise MarkerError(f"{where}:{number}: <!-- end: {end.group(1)} --> closes the block {inside!r}")
            out.append(line)
            inside = None
        elif start is not None:
            raise MarkerError(f"{where}:{number}: the block {inside!r} is not closed before {start.group(1)!r}")
    if inside is not None:
        raise MarkerError(f"{where}: the block {inside!r} is not closed (<!-- end: {inside} -->)")
    missing = sorted(set(blocks) - set(seen))
    if missing:
        raise MarkerError(
            f"{where}: no markers for the generated block(s) {', '.join(missing)}; add "
            + " and ".join(f"<!-- generated: {name} --> <!-- end: {name} -->" for name in missing)
        )
    return "".join(out)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; ``|`` and line breaks in cells are escaped."""

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def stale_pages(root: Path, *, write: bool) -> list[str]:
    """The pages whose generated blocks differ from the code (rewritten when ``write``)."""
    stale = []
    for page in _pages():
        path = root / page.path
        text = path.read_text(encoding="utf-8")
        rendered = render_page(text, page.blocks(), where=page.path)
        if rendered != text:
            stale.append(page.path)
            if write:
                path.write_text(rendered, encoding="utf-8")
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gateway.docgen",
        description="Render the generated tables of the documentation (conformance statement, configuration "
        "reference) from the code.",
    )
    parser.add_argument("--write", action="store_true", help="rewrite the pages (default: only check them)")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1], help="repository root")
    args = parser.parse_args(argv)
    try:
        stale = stale_pages(args.root, write=args.write)
    except (MarkerError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.write:
        print("rewrote " + ", ".join(stale) if stale else "the generated blocks are up to date")
        return 0
    if stale:
        print(f"out of date: {', '.join(stale)}; run: {WRITE_COMMAND}", file=sys.stderr)
        return 1
    print("the generated blocks are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
