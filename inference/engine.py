"""The engine interface the gateway talks to: ``identity`` and ``analyze``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from pydicom.dataset import Dataset

from inference.results import ModelIdentity, StudyAnalysis


class InferenceError(Exception):
    """The model could not analyse a study (bad pixels, backend failure, ...)."""


class InputImageError(InferenceError):
    """An input image cannot be analysed, however often it is tried (undecodable pixel data, not an image, ...).

    Not the model's fault and not transient: a caller should not retry it.  ``sop_instance_uid``
    names the image (None when the image has none).
    """

    def __init__(self, message: str, sop_instance_uid: str | None = None) -> None:
        super().__init__(message)
        self.sop_instance_uid = sop_instance_uid


@runtime_checkable
class Engine(Protocol):
    """Anything that turns the images of one study into a :class:`StudyAnalysis`."""

    @property
    def identity(self) -> ModelIdentity: ...

    def analyze(self, datasets: Sequence[Dataset]) -> StudyAnalysis:
        """Analyse every image in ``datasets``; all must belong to one study."""
        ...
