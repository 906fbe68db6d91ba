"""A :class:`GatewayObserver` that records every event, for the tests of the call sites."""

from __future__ import annotations

import threading
from typing import Any

from gateway.events import Observers

EVENTS = (
    "association_accepted",
    "association_rejected",
    "instance_stored",
    "instance_refused",
    "association_ended",
    "study_completed",
    "job_finished",
    "delivery_finished",
)


class Recorder(Observers):
    """Records ``(event, args)`` in order (every event of :class:`Observers` passes through ``_each``);
    :meth:`wait_for` waits for events that server threads send."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, tuple[Any, ...]]] = []
        self._changed = threading.Condition()

    def _each(self, name: str, *args: Any) -> None:
        with self._changed:
            self.events.append((name, args))
            self._changed.notify_all()

    def of(self, name: str) -> list[tuple[Any, ...]]:
        with self._changed:
            return self._of(name)

    def wait_for(self, name: str, count: int = 1, timeout: float = 30.0) -> list[tuple[Any, ...]]:
        """The arguments of the first ``count`` ``name`` events, once that many arrived (AssertionError if not)."""

        def arrived() -> bool:
            return len(self._of(name)) >= count

        with self._changed:
            assert self._changed.wait_for(arrived, timeout=timeout), f"{count} {name} event(s) expected: {self.events}"
            return self._of(name)

    def _of(self, name: str) -> list[tuple[Any, ...]]:
        return [args for event, args in self.events if event == name]
