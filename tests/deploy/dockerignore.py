"""Docker's ``.dockerignore`` semantics, for checking what a build context holds.

The rules of BuildKit's pattern matcher (``moby/patternmatcher``): patterns are cleaned
paths relative to the context root; ``*`` matches any run of characters except ``/``, ``?``
one such character, ``**`` any number of directories; a pattern that matches a directory
matches everything under it; ``!`` re-includes; the last pattern that matches decides.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pattern:
    text: str
    exclusion: bool  # False: a "!" re-inclusion
    regex: re.Pattern[str]


def _translate(pattern: str) -> re.Pattern[str]:
    out = ["^"]
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**", index):
            index += 2
            if pattern.startswith("/", index):  # "**/" : zero or more directories
                index += 1
                out.append("(?:.*/)?")
            else:
                out.append(".*")
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.index("]", index)
            out.append(pattern[index : end + 1].replace("[!", "[^"))
            index = end
        else:
            out.append(re.escape(char))
        index += 1
    out.append("$")
    return re.compile("".join(out))


def parse(text: str) -> list[Pattern]:
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = not line.startswith("!")
        body = line if exclusion else line[1:].strip()
        cleaned = posixpath.normpath(body.lstrip("/"))
        patterns.append(Pattern(line, exclusion, _translate(cleaned)))
    return patterns


def excluded(patterns: list[Pattern], relpath: str) -> bool:
    """Whether ``relpath`` (relative to the context root) is left out of the build context."""
    parts = relpath.split("/")
    prefixes = ["/".join(parts[: count + 1]) for count in range(len(parts))]
    result = False
    for pattern in patterns:
        if any(pattern.regex.match(prefix) for prefix in prefixes):
            result = pattern.exclusion
    return result


def context_files(root: Path, patterns: list[Pattern], under: str) -> list[str]:
    """The files below ``under`` (relative to ``root``) that the build context holds."""
    base = root / under
    candidates = [base] if base.is_file() else sorted(path for path in base.rglob("*") if path.is_file())
    kept = []
    for path in candidates:
        relpath = path.relative_to(root).as_posix()
        if not excluded(patterns, relpath):
            kept.append(relpath)
    return kept
