"""Logging an unexpected exception without its message, which could quote patient data."""

from __future__ import annotations

import logging
import traceback


def log_unexpected(logger: logging.Logger, what: str, exc: BaseException) -> None:
    """``what``, the exception's type and its traceback frames; never ``str(exc)`` (no PHI in logs)."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    logger.error("%s: unexpected %s\n%s", what, type(exc).__name__, frames.rstrip())
