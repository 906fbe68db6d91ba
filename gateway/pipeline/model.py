"""The analysis engine a worker uses, built from ``model`` settings and loaded once per process.

``model.path: fake`` (tests and benchmarks only) uses :class:`inference.FakeEngine`, which
returns a fixed analysis without a model; ``fake:seconds=S`` takes S seconds per study, so
tests can stop a worker in the middle of a job.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from pydicom.dataset import Dataset

from gateway.config.pipeline import ModelSettings, fake_seconds
from inference import (
    BackendOptions,
    Engine,
    FakeEngine,
    InferenceError,
    ModelIdentity,
    StudyAnalysis,
    is_demo_checkpoint,
    load_engine,
)

LOGGER = logging.getLogger(__name__)

#: After a failed load, how long before the next try.
RELOAD_SECONDS = 60.0


class ModelUnavailable(Exception):  # noqa: N818 - a state, reported to the operator as such
    """The configured model cannot be loaded; the message says why and what to do."""


class SlowFakeEngine:
    """The FakeEngine, taking ``seconds`` per study (test only)."""

    def __init__(self, seconds: float) -> None:
        self._fake = FakeEngine()
        self._seconds = seconds

    @property
    def identity(self) -> ModelIdentity:
        return self._fake.identity

    def analyze(self, datasets: Sequence[Dataset]) -> StudyAnalysis:
        time.sleep(self._seconds)
        return self._fake.analyze(datasets)


def demo_refusal(path: str) -> str:
    """Why a demo checkpoint at ``path`` is refused, and what to do."""
    return (
        f"model.path {path!r} is a demo model (demo weights trained on synthetic phantoms): it writes nonsense on "
        "real radiographs and is not for clinical use. Set model.path to your GazeX checkpoint; to run the demo "
        "model anyway (trying the gateway, never with an archive radiologists read) set model.allow_demo: true "
        "(GAZEX_MODEL__ALLOW_DEMO=true); its outputs then say DEMO MODEL - NOT FOR CLINICAL USE"
    )


def check_demo_allowed(settings: ModelSettings) -> None:
    """Raise :class:`ModelUnavailable` when ``settings`` name a demo checkpoint without ``model.allow_demo``.

    Reads the checkpoint's ``gazex.json`` only; a checkpoint that cannot be read is left to the
    loader, which says why.
    """
    if settings.allow_demo or settings.is_fake:
        return
    try:
        demo = is_demo_checkpoint(settings.path)
    except InferenceError:  # CheckpointError: the loader reports it, with what to fix
        return
    if demo:
        raise ModelUnavailable(demo_refusal(settings.path))


def load_model(settings: ModelSettings) -> Engine:
    """The engine ``settings`` describe; raises :class:`ModelUnavailable` with the reason.

    A demo checkpoint is refused unless ``model.allow_demo`` is set.
    """
    if settings.is_fake:
        seconds = fake_seconds(settings.path)
        return SlowFakeEngine(seconds) if seconds > 0 else FakeEngine()
    check_demo_allowed(settings)
    try:
        engine = load_engine(
            settings.path,
            backend=settings.backend,
            device=settings.device,
            dtype=settings.dtype,
            max_batch=settings.max_batch,
            fallback=tuple(settings.fallback),
            options=BackendOptions(
                onnx_dir=settings.onnx_dir,
                cache_dir=settings.cache_dir,
                engine_dir=settings.engine_dir,
                precision=settings.precision,
                triton_url=settings.triton_url,
                triton_timeout=settings.triton_timeout,
                threads=settings.threads,
            ),
        )
    except InferenceError as exc:  # CheckpointError is an InferenceError
        raise ModelUnavailable(
            f"the model {settings.path!r} (backend {settings.backend}, device {settings.device}) cannot be loaded: "
            f"{exc}; fix model.path/model.backend/model.device, studies wait in the queue meanwhile"
        ) from None
    if engine.identity.demo and not settings.allow_demo:  # the checkpoint changed since the check above
        raise ModelUnavailable(demo_refusal(settings.path))
    if engine.identity.demo:
        LOGGER.warning(
            "model %s %s is a DEMO MODEL, NOT FOR CLINICAL USE (model.allow_demo is true): it writes nonsense on "
            "real radiographs",
            engine.identity.name,
            engine.identity.version,
        )
    return engine


class ModelHolder:
    """Loads the model on first use, shares it between a process's worker threads, retries a failed load."""

    def __init__(
        self,
        settings: ModelSettings,
        loader: Callable[[ModelSettings], Engine] = load_model,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._loader = loader
        self._clock = clock
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._failed_at: float | None = None
        self._failure: str | None = None

    @property
    def loaded(self) -> bool:
        """Is the model loaded in this process (for the metrics)?"""
        return self._engine is not None

    def get(self) -> Engine:
        """The engine; :class:`ModelUnavailable` while it cannot be loaded (a new try every RELOAD_SECONDS)."""
        with self._lock:
            if self._engine is not None:
                return self._engine
            if self._failed_at is not None and self._clock() - self._failed_at < RELOAD_SECONDS:
                raise ModelUnavailable(self._failure or "the model cannot be loaded")
            try:
                engine = self._loader(self._settings)
            except ModelUnavailable as exc:
                self._failed_at = self._clock()
                self._failure = str(exc)
                LOGGER.error("%s (next try in %.0f s)", exc, RELOAD_SECONDS)
                raise
            self._engine = engine
            identity = engine.identity
            LOGGER.info(
                "model %s %s (%s, weights %s) ready",
                identity.name,
                identity.version,
                identity.backend,
                identity.checkpoint_sha256[:12],
            )
            return engine

    def state(self) -> tuple[bool, str]:
        """(loaded, what): whether the engine is loaded, and its name or why not (for /readyz)."""
        with self._lock:
            if self._engine is not None:
                identity = self._engine.identity
                return True, f"{identity.name} {identity.version} ({identity.backend})"
            if self._failure is not None:
                return False, self._failure
            return False, "not loaded yet"
