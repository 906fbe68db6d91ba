"""The README stays the short front page: the two commands, the demo, and links into docs/ that resolve."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"

#: The quick start's two commands, word for word: .ci/run runs the second (`make test`).
COMMANDS = (
    "make demo    # set up, then run the main job on the embedded defaults (SQLite, ./var spool, bundled model)",
    "make test    # set up, then run lint, type checks and the whole test suite",
)

_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)\s]*)?\)")


def test_the_readme_is_short_and_keeps_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    lines = text.splitlines()
    for command in COMMANDS:
        assert command in lines, f"README.md lost the quick-start line {command!r}"
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo:", makefile, re.MULTILINE) and re.search(r"^test:", makefile, re.MULTILINE)
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_every_relative_link_of_the_readme_resolves() -> None:
    targets = [t for t in _LINK.findall(README.read_text(encoding="utf-8")) if "://" not in t]
    assert "docs/images/demo-overlay.png" in targets
    assert "inference/checkpoints/gazex-demo/MODEL_CARD.md" in targets
    missing = [t for t in targets if not (REPO_ROOT / t).is_file()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_every_docs_page_is_linked_from_the_readme_or_the_home_page() -> None:
    linked = set(_LINK.findall(README.read_text(encoding="utf-8")))
    linked |= {f"docs/{t}" for t in _LINK.findall((REPO_ROOT / "docs" / "index.md").read_text(encoding="utf-8"))}
    pages = {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "docs").glob("*.md")} - {"docs/index.md"}
    assert not pages - linked, f"pages no one links to: {sorted(pages - linked)}"
