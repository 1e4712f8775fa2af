"""Durations and thresholds as scenario files write them (docs/scenarios.md).

A duration is a number of seconds or a string with units: ``"15s"``, ``"500ms"``, ``"2m"``,
``"1h"``, ``"1.5s"``, ``"1m30s"``. A threshold is a comparison and a value: ``"< 1s"``,
``">= 0.95"``, ``"< 5%"``, ``"== 100%"``.
"""

from __future__ import annotations

import math
import re
from typing import Final, Literal, cast

__all__ = [
    "Duration",
    "Threshold",
    "ThresholdOp",
    "ThresholdUnit",
    "format_duration",
    "parse_duration",
    "parse_threshold",
]

ThresholdOp = Literal["<", "<=", ">", ">=", "=="]
ThresholdUnit = Literal["", "s", "%"]

_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_NUMBER: Final = r"(?:\d+(?:\.\d*)?|\.\d+)"
# One or more number+unit parts, largest unit first by convention ("1m30s"); "ms" before "m".
_DURATION_PART: Final = re.compile(rf"({_NUMBER})\s*(ms|s|m|h)")
_DURATION: Final = re.compile(rf"(?:{_NUMBER}\s*(?:ms|s|m|h)\s*)+")
_THRESHOLD: Final = re.compile(
    rf"\s*(?P<op><=|>=|==|<|>)\s*(?P<sign>[-+]?)(?P<number>{_NUMBER})\s*(?P<unit>ms|s|m|h|%)?\s*"
)
_DURATION_HINT: Final = (
    "write a number of seconds or a number with a unit (ms, s, m, h), like '15s'"
)
_THRESHOLD_HINT: Final = (
    "write a comparison (<, <=, >, >=, ==) and a number, with an optional unit (ms, s, m, h, %),"
    " like '< 1s', '>= 0.95' or '< 5%'"
)


class Duration(float):
    """A length of time in seconds: a ``float`` converted from ``"15s"`` or ``15``.

    It is a distinct type so that msgspec hands its values to the scenario ``dec_hook``.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Duration({float(self)!r})"


def parse_duration(value: object) -> float:
    """Return ``value`` in seconds: a non-negative number, or a string such as ``"1.5s"``.

    Raises ``TypeError`` for a value that is neither a number nor a string, and ``ValueError``
    for a string that is not a duration or for a negative or non-finite number.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"expected a duration, got {type(value).__name__}: {_DURATION_HINT}")
    if isinstance(value, str):
        text = value.strip()
        if _DURATION.fullmatch(text) is None:
            if _looks_like_number(text):
                raise ValueError(f"duration {value!r} has no unit: {_DURATION_HINT}")
            raise ValueError(f"invalid duration {value!r}: {_DURATION_HINT}")
        return sum(
            float(m.group(1)) * _UNIT_SECONDS[m.group(2)] for m in _DURATION_PART.finditer(text)
        )
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"invalid duration {value!r}: a duration is a finite, non-negative number")
    return seconds


def format_duration(seconds: float) -> str:
    """Render seconds the way a scenario file would write them: ``5.0`` as ``"5s"``."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    millis = seconds * 1000
    if abs(millis - round(millis)) < 1e-9:
        return f"{round(millis)}ms"
    return f"{seconds!r}s"


def _looks_like_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class Threshold:
    """A bound: ``op`` (``<``, ``<=``, ``>``, ``>=``, ``==``), ``value``, ``unit``.

    ``unit`` is ``"s"`` for a time (``value`` in seconds, whatever unit the file used), ``"%"`` for
    a percentage (``value`` as written: ``5`` for ``5%``) or ``""`` for a plain number.
    Immutable, hashable and equal by value, like a frozen dataclass. It is written by hand and not
    as a dataclass because msgspec converts dataclasses itself from mappings and never offers them
    to a ``dec_hook``, and thresholds are written as strings.
    """

    __slots__ = ("_op", "_unit", "_value")

    _op: ThresholdOp
    _value: float
    _unit: ThresholdUnit

    def __init__(self, op: ThresholdOp, value: float, unit: ThresholdUnit = "") -> None:
        if op not in ("<", "<=", ">", ">=", "=="):
            raise ValueError(f"invalid threshold operator {op!r}: use <, <=, >, >= or ==")
        if unit not in ("", "s", "%"):
            raise ValueError(f"invalid threshold unit {unit!r}: use '', 's' or '%'")
        if not math.isfinite(value):
            raise ValueError(f"invalid threshold value {value!r}: it must be finite")
        object.__setattr__(self, "_op", op)
        object.__setattr__(self, "_value", float(value))
        object.__setattr__(self, "_unit", unit)

    @property
    def op(self) -> ThresholdOp:
        """The comparison: ``<``, ``<=``, ``>``, ``>=`` or ``==``."""
        return self._op

    @property
    def value(self) -> float:
        """The number: seconds for ``s``, the percentage for ``%``, else as written."""
        return self._value

    @property
    def unit(self) -> ThresholdUnit:
        """``"s"``, ``"%"`` or ``""``."""
        return self._unit

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Threshold is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Threshold is immutable; cannot delete {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Threshold):
            return NotImplemented
        return (self.op, self.value, self.unit) == (other.op, other.value, other.unit)

    def __hash__(self) -> int:
        return hash((Threshold, self.op, self.value, self.unit))

    def __repr__(self) -> str:
        return f"Threshold(op={self.op!r}, value={self.value!r}, unit={self.unit!r})"

    def __str__(self) -> str:
        if self.unit == "s":
            return f"{self.op} {format_duration(self.value)}"
        number = int(self.value) if self.value == int(self.value) else self.value
        return f"{self.op} {number}{self.unit}"

    @property
    def limit(self) -> float:
        """The number a measurement is compared with: seconds, a ratio for ``%``, or the value."""
        return self.value / 100 if self.unit == "%" else self.value

    def holds(self, measured: float) -> bool:
        """Whether ``measured`` meets the threshold (a ratio for ``%``: 0.97 meets ``>= 95%``)."""
        limit = self.limit
        if self.op == "<":
            return measured < limit
        if self.op == "<=":
            return measured <= limit
        if self.op == ">":
            return measured > limit
        if self.op == ">=":
            return measured >= limit
        return measured == limit


def parse_threshold(value: object) -> Threshold:
    """Parse ``"< 1s"``, ``">= 0.95"``, ``"< 5%"`` or ``"== 100%"`` into a ``Threshold``.

    Times in ``ms``, ``m`` or ``h`` become seconds. Raises ``TypeError`` for a value that is not a
    string and ``ValueError`` for a string that is not a threshold or a negative time.
    """
    if not isinstance(value, str):
        raise TypeError(
            f"expected a threshold string, got {type(value).__name__}: {_THRESHOLD_HINT}"
        )
    match = _THRESHOLD.fullmatch(value)
    if match is None:
        raise ValueError(f"invalid threshold {value!r}: {_THRESHOLD_HINT}")
    number = float(match["number"])
    if match["sign"] == "-":
        number = -number
    suffix = match["unit"] or ""
    op = cast(ThresholdOp, match["op"])
    if suffix in _UNIT_SECONDS:
        if number < 0:
            raise ValueError(f"invalid threshold {value!r}: a time cannot be negative")
        return Threshold(op, number * _UNIT_SECONDS[suffix], "s")
    return Threshold(op, number, cast(ThresholdUnit, suffix))
