"""Logging an unexpected exception without its message, which could quote patient data."""

from __future__ import annotations

import logging
import traceback


def log_unexpected(logger: logging.Logger, what: str, exc: BaseException) -> None:
    """``what``, the exception's type and its traceback frames; never ``str(exc)`` (no PHI in logs)."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    logger.error("%s: unexpected %s\n%s", what, type(exc).__name__, frames.rstrip())


def keep_identifiers_out_of_logs() -> None:
    """Stop pynetdicom from logging C-FIND/C-GET/C-MOVE identifiers, attribute by attribute.

    pynetdicom writes each request and response identifier to its INFO log (patient names,
    IDs, accession numbers of every match), and ``--log-level DEBUG`` lets its INFO lines
    through. The identifiers of our queries go to the audit trail (a Query message), never to
    the ordinary log.
    """
    from pynetdicom import _config as pynetdicom_config

    pynetdicom_config.LOG_REQUEST_IDENTIFIERS = False
    pynetdicom_config.LOG_RESPONSE_IDENTIFIERS = False
