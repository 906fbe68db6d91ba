"""Retry policy: exponential backoff with jitter, and when to give up.  Pure."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from gateway.config.pipeline import DeliverySettings


@dataclass(frozen=True)
class Backoff:
    """``base * factor**(n-1)``, capped at ``max_delay``, shortened by a random fraction up to ``jitter``.

    Jitter only ever shortens a delay, so ``max_delay`` is a true maximum, and many
    deliveries that failed together (an archive restarting) do not retry in lockstep.
    """

    base: float
    factor: float
    max_delay: float
    jitter: float
    max_attempts: int

    @classmethod
    def from_settings(cls, settings: DeliverySettings) -> Backoff:
        return cls(
            base=settings.base_delay_seconds,
            factor=settings.factor,
            max_delay=settings.max_delay_seconds,
            jitter=settings.jitter,
            max_attempts=settings.max_attempts,
        )

    def delay(self, attempt: int, uniform: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1 = the first) before the next."""
        if attempt < 1:
            raise ValueError(f"attempt must be 1 or more, got {attempt}")
        exponent = min(attempt - 1, 1024)  # factor**1024 overflows long before; the cap applies anyway
        try:
            raw = self.base * self.factor**exponent
        except OverflowError:
            raw = self.max_delay
        capped = min(raw, self.max_delay)
        return capped * (1.0 - self.jitter * uniform())

    def exhausted(self, attempts: int) -> bool:
        """After ``attempts`` failed attempts, is it time for the dead letter?"""
        return attempts >= self.max_attempts
