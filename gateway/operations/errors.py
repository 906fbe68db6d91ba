"""The one exception operations raise: what was refused, and why, in words."""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal["not_found", "conflict", "invalid"]


class OperationError(Exception):
    """A refused query or action; ``kind`` is ``not_found``, ``conflict`` or ``invalid``.

    Nothing was changed when it is raised.  The message says what was wrong and what to do.
    """

    def __init__(self, message: str, kind: ErrorKind = "invalid") -> None:
        if kind not in ("not_found", "conflict", "invalid"):
            raise ValueError(f'Argument "kind" must be not_found, conflict or invalid, not {kind!r}')
        super().__init__(message)
        self.kind: ErrorKind = kind
