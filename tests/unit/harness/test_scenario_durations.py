"""Durations and thresholds as scenario files write them (docs/scenarios.md)."""

from __future__ import annotations

import pytest

from harness.scenario import Duration, Threshold, format_duration, parse_duration, parse_threshold


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("15s", 15.0),
        ("2m", 120.0),
        ("500ms", 0.5),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("1m30s", 90.0),
        (" 10 s ", 10.0),
        (15, 15.0),
        (0.25, 0.25),
        (0, 0.0),
    ],
)
def test_parse_duration_accepts_units_and_plain_seconds(text: str | float, seconds: float) -> None:
    """Strings with ms, s, m, h (or several parts) and plain numbers become seconds."""
    assert seconds == parse_duration(text)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("15", ValueError, "duration '15' has no unit"),
        ("15 sec", ValueError, "invalid duration '15 sec'"),
        ("-1s", ValueError, "invalid duration '-1s'"),
        (-1, ValueError, "invalid duration -1: a duration is a finite, non-negative number"),
        (float("inf"), ValueError, "invalid duration inf"),
        (True, TypeError, "expected a duration, got bool"),
        ([1], TypeError, "expected a duration, got list"),
    ],
)
def test_parse_duration_rejects_what_is_not_a_duration(
    value: object, error: type[Exception], message: str
) -> None:
    """A unitless string, an unknown unit, a negative number or a non-number is refused."""
    with pytest.raises(error) as caught:
        parse_duration(value)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("seconds", "text"), [(5.0, "5s"), (0.5, "500ms"), (90.0, "90s"), (0.0015, "0.0015s")]
)
def test_format_duration_writes_what_a_file_would(seconds: float, text: str) -> None:
    """Whole seconds as ``s``, whole milliseconds as ``ms``, anything else as fractional seconds."""
    assert text == format_duration(seconds)


def test_duration_is_a_float_in_seconds() -> None:
    """A ``Duration`` compares and computes as the float it holds."""
    assert 1.5 == Duration(1.5)
    assert "Duration(1.5)" == repr(Duration(1.5))


@pytest.mark.parametrize(
    ("text", "threshold"),
    [
        ("< 1s", Threshold("<", 1.0, "s")),
        ("<= 500ms", Threshold("<=", 0.5, "s")),
        (">= 0.95", Threshold(">=", 0.95, "")),
        ("< 5%", Threshold("<", 5.0, "%")),
        ("== 100%", Threshold("==", 100.0, "%")),
        (">-5%", Threshold(">", -5.0, "%")),
        ("< 2m", Threshold("<", 120.0, "s")),
    ],
)
def test_parse_threshold_reads_operator_value_and_unit(text: str, threshold: Threshold) -> None:
    """Operators, plain numbers, percentages and times (normalised to seconds) are read."""
    assert threshold == parse_threshold(text)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        ("1s", ValueError, "invalid threshold '1s': write a comparison"),
        ("=< 1s", ValueError, "invalid threshold '=< 1s'"),
        ("< fast", ValueError, "invalid threshold '< fast'"),
        ("< -1s", ValueError, "invalid threshold '< -1s': a time cannot be negative"),
        (0.95, TypeError, "expected a threshold string, got float"),
    ],
)
def test_parse_threshold_rejects_what_is_not_a_threshold(
    value: object, error: type[Exception], message: str
) -> None:
    """A value without an operator, a bad operator or unit, a negative time is refused."""
    with pytest.raises(error) as caught:
        parse_threshold(value)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("text", "measured", "holds"),
    [
        ("< 1s", 0.999, True),
        ("< 1s", 1.0, False),
        ("<= 1s", 1.0, True),
        (">= 95%", 0.97, True),
        (">= 95%", 0.94, False),
        ("> 0.5", 0.6, True),
        ("== 100%", 1.0, True),
    ],
)
def test_threshold_holds_compares_with_the_limit(text: str, measured: float, holds: bool) -> None:
    """A measurement is compared with the limit; percentages compare ratios."""
    assert holds == parse_threshold(text).holds(measured)


def test_threshold_is_immutable_hashable_and_printable() -> None:
    """A threshold cannot change, equal ones hash alike, and ``str`` gives the written form."""
    threshold = parse_threshold("<= 500ms")
    with pytest.raises(AttributeError):
        threshold.value = 2.0  # type: ignore[misc]
    assert {threshold} == {Threshold("<=", 0.5, "s")}
    assert "<= 500ms" == str(threshold)
    assert ">= 95%" == str(parse_threshold(">= 95%"))
    assert "Threshold(op='<', value=0.5, unit='')" == repr(Threshold("<", 0.5))
