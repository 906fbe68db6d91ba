"""Identities derived from content: the job's idempotency key and the analysis id.  Pure.

* ``instance_set_sha256``: the set of (SOP Instance UID, content hash) pairs, order-free.
* ``idempotency_key``: the study, the set of analysed instances' hashes and the model, so
  completing a study twice with the same instances queues one job, while a changed instance
  set, another model, or an operator's ``gazex reprocess`` (a nonce) queues a new one.
* ``analysis_id``: the first 16 hex digits of the key (so "GazeX analysis <id>, supersedes
  <id>" fits a SEG's or GSPS's 64-character Content Description).  It is what
  :func:`dicom_sr.encode` derives the outputs' UIDs from, with the source UIDs and the model
  identity.  A job claimed again after its worker was killed has the same key, hence the same
  UIDs; a superseding analysis has another key, hence new UIDs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

ANALYSIS_ID_DIGITS = 16


def instance_set_sha256(instances: Iterable[tuple[str, str]]) -> str:
    """SHA-256 over the sorted ``(sop_instance_uid, content_sha256)`` pairs."""
    digest = hashlib.sha256()
    for uid, content in sorted(set(instances)):
        digest.update(f"{uid}\0{content}\n".encode())
    return digest.hexdigest()


def idempotency_key(
    study_instance_uid: str, analysed: Iterable[tuple[str, str]], model_ref: str, nonce: str | None = None
) -> str:
    material = f"study={study_instance_uid}\ninstances={instance_set_sha256(analysed)}\nmodel={model_ref}\n"
    if nonce is not None:
        material += f"reprocess={nonce}\n"
    return hashlib.sha256(material.encode()).hexdigest()


def analysis_id(key: str) -> str:
    if len(key) < ANALYSIS_ID_DIGITS:
        raise ValueError("an idempotency key is 64 hex digits")
    return key[:ANALYSIS_ID_DIGITS]
