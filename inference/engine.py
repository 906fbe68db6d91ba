"""The engine interface the gateway talks to: ``identity`` and ``analyze``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from pydicom.dataset import Dataset

from inference.results import ModelIdentity, StudyAnalysis


class InferenceError(Exception):
    """The model could not analyse a study (bad pixels, backend failure, ...)."""


@runtime_checkable
class Engine(Protocol):
    """Anything that turns the images of one study into a :class:`StudyAnalysis`."""

    @property
    def identity(self) -> ModelIdentity: ...

    def analyze(self, datasets: Sequence[Dataset]) -> StudyAnalysis:
        """Analyse every image in ``datasets``; all must belong to one study."""
        ...
