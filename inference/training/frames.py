"""The coordinate frame a model writes its boxes in, as a checkpoint's ``gazex.json`` declares it.

- ``{"kind": "downscaled", "factor": 4}``: absolute pixels of the source image downscaled by
  ``factor`` (what GazeX was trained on: REFLACX coordinates divided by 4).
- ``{"kind": "normalized", "scale": 1000}``: coordinates scaled so that the image spans
  0..``scale`` on each axis (what plain Qwen2-VL writes).

Training records are written in the frame the checkpoint will declare, and the runtime maps
the model's output back to source pixels with :meth:`CoordinateFrame.to_source`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal


def _nearest(value: float) -> int:
    """Round half up (52.5 -> 53), not to even as ``round`` does."""
    return math.floor(value + 0.5)


@dataclass(frozen=True, slots=True)
class CoordinateFrame:
    kind: Literal["downscaled", "normalized"]
    value: float  # the factor (downscaled) or the scale (normalized)

    def __post_init__(self) -> None:
        if self.kind not in ("downscaled", "normalized"):
            raise ValueError(f'Argument "kind" must be "downscaled" or "normalized", got {self.kind!r}')
        if not self.value > 0:
            raise ValueError(f"the {self.kind} frame needs a positive {self._parameter}, got {self.value}")

    @property
    def _parameter(self) -> str:
        return "factor" if self.kind == "downscaled" else "scale"

    @classmethod
    def downscaled(cls, factor: float = 4) -> CoordinateFrame:
        return cls("downscaled", factor)

    @classmethod
    def normalized(cls, scale: float = 1000) -> CoordinateFrame:
        return cls("normalized", scale)

    @classmethod
    def parse(cls, text: str) -> CoordinateFrame:
        """``downscaled:4`` or ``normalized:1000`` (the command-line spelling)."""
        kind, _, number = text.partition(":")
        if kind not in ("downscaled", "normalized") or not number:
            raise ValueError(
                f"coordinate frame {text!r} is not downscaled:FACTOR or normalized:SCALE (e.g. downscaled:4)"
            )
        try:
            value = float(number)
        except ValueError:
            raise ValueError(f"coordinate frame {text!r}: {number!r} is not a number") from None
        return cls(kind, value)  # type: ignore[arg-type]

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> CoordinateFrame:
        """From ``gazex.json``'s ``coordinates`` object."""
        kind = data.get("kind")
        key = "factor" if kind == "downscaled" else "scale"
        number = data.get(key)
        if kind not in ("downscaled", "normalized") or not isinstance(number, int | float):
            expected = '{"kind": "downscaled", "factor": N} or {"kind": "normalized", "scale": N}'
            raise ValueError(f"coordinates must be {expected}, got {dict(data)}")
        return cls(kind, float(number))

    def to_json(self) -> dict[str, object]:
        value: float | int = int(self.value) if self.value == int(self.value) else self.value
        return {"kind": self.kind, self._parameter: value}

    def __str__(self) -> str:
        value = int(self.value) if self.value == int(self.value) else self.value
        return f"{self.kind}:{value}"

    def to_model(self, x: float, y: float, rows: int, columns: int) -> tuple[int, int]:
        """A source-pixel point as the integers the model writes, clipped to the image."""
        x = min(max(x, 0.0), float(columns))
        y = min(max(y, 0.0), float(rows))
        if self.kind == "downscaled":
            return _nearest(x / self.value), _nearest(y / self.value)
        return _nearest(x / columns * self.value), _nearest(y / rows * self.value)

    def to_source(self, x: float, y: float, rows: int, columns: int) -> tuple[float, float]:
        """A point the model wrote, in source pixels (not clipped)."""
        if self.kind == "downscaled":
            return x * self.value, y * self.value
        return x / self.value * columns, y / self.value * rows
