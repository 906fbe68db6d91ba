"""``load_engine``: a GazeX checkpoint and a backend, behind the :class:`inference.engine.Engine` interface."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from inference.backends import BackendOptions, backend_order, create_backend
from inference.checkpoint import Checkpoint, CheckpointError, open_checkpoint
from inference.engine import InferenceError
from inference.generation import GenerationBackend
from inference.pipeline import GazexPipeline, ImageReport
from inference.results import ModelIdentity, StudyAnalysis

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyReport:
    """A study's analysis with each image's timings, notes and dropped regions."""

    analysis: StudyAnalysis
    images: tuple[ImageReport, ...]


class GazexEngine:
    """Runs GazeX on the images of one study at a time (concurrent calls are serialised)."""

    def __init__(self, checkpoint: Checkpoint, backend: GenerationBackend) -> None:
        self.checkpoint = checkpoint
        self.backend = backend
        self.pipeline = GazexPipeline(checkpoint, backend)
        self._lock = threading.Lock()
        self._identity = ModelIdentity(
            name=checkpoint.gazex.name,
            version=checkpoint.gazex.version,
            checkpoint_sha256=checkpoint.weights_sha256,
            backend=backend.name,
            manufacturer=checkpoint.gazex.manufacturer,
            demo=checkpoint.gazex.is_demo,
        )

    @property
    def identity(self) -> ModelIdentity:
        return self._identity

    def analyze_study(self, datasets: Sequence[Dataset]) -> StudyReport:
        """Analyse every image of one study, keeping each image's timings and notes."""
        started = time.perf_counter()
        if not datasets:
            raise InferenceError("analyze() needs at least one image")
        studies = {str(ds.get("StudyInstanceUID", "")) for ds in datasets}
        if len(studies) != 1:
            raise InferenceError(f"analyze() takes the images of one study at a time, got {len(studies)} studies")
        with self._lock:
            reports = tuple(self.pipeline.analyze(ds) for ds in datasets)
        seconds = time.perf_counter() - started
        study_uid = studies.pop()
        logger.info(
            "study %s: analysed %d image(s) in %.2f s with %s %s (%s)",
            study_uid,
            len(reports),
            seconds,
            self._identity.name,
            self._identity.version,
            self.backend.name,
        )
        analysis = StudyAnalysis(
            study_instance_uid=study_uid,
            images=tuple(r.analysis for r in reports),
            model=self._identity,
            seconds=seconds,
        )
        return StudyReport(analysis=analysis, images=reports)

    def analyze(self, datasets: Sequence[Dataset]) -> StudyAnalysis:
        """Analyse every image in ``datasets``; all must belong to one study."""
        return self.analyze_study(datasets).analysis


def load_engine(
    path_or_builtin: str | Path,
    backend: str = "torch",
    device: str = "auto",
    *,
    dtype: str = "auto",
    max_batch: int = 16,
    fallback: Sequence[str] = (),
    options: BackendOptions | None = None,
) -> GazexEngine:
    """Load a GazeX checkpoint (a directory, or ``builtin:NAME``) with a generation backend.

    ``backend`` is ``torch``, ``hf-generate``, ``onnx``, ``tensorrt`` or ``triton``.  When it
    cannot be set up (not installed, no GPU, no server, no engine), the backends in
    ``fallback`` are tried in order, each with a warning; with no ``fallback`` (the default)
    the error is raised.  A missing or corrupt checkpoint is never a reason to fall back.
    ``options`` configures the exported-graph backends (:class:`BackendOptions`).

    ``device`` is ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``; ``dtype`` is
    ``auto`` (bfloat16 on CUDA, float32 on the CPU), ``float32``, ``bfloat16`` or ``float16``
    (torch backends).  Raises :class:`inference.checkpoint.CheckpointError` for a missing or
    corrupt checkpoint and :class:`InferenceError` for an unusable backend or device.
    """
    order = backend_order(backend, fallback)
    checkpoint = open_checkpoint(path_or_builtin)
    failures: list[str] = []
    generation_backend: GenerationBackend | None = None
    for name in order:
        try:
            generation_backend = create_backend(
                name, checkpoint, device=device, dtype=dtype, max_batch=max_batch, options=options
            )
        except CheckpointError:
            raise
        except InferenceError as exc:
            failures.append(f"{name}: {exc}")
            remaining = order[len(failures) :]
            if remaining:
                logger.warning(
                    "the %s backend cannot be used (%s); falling back to %s as configured", name, exc, remaining[0]
                )
            continue
        break
    if generation_backend is None:
        if len(order) == 1:
            raise InferenceError(failures[0].split(": ", 1)[1])
        raise InferenceError("no configured backend can be used: " + "; ".join(failures))
    engine = GazexEngine(checkpoint, generation_backend)
    identity = engine.identity
    logger.info(
        "loaded GazeX checkpoint %s %s from %s (weights sha256 %s) with the %s backend",
        identity.name,
        identity.version,
        checkpoint.path,
        identity.checkpoint_sha256,
        identity.backend,
    )
    return engine
