"""Reconnection back-off (docs/protocol.md §14.1), with no event loop."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from reference_server.protocol.backoff import CAP_S, reconnect_delay


@given(
    attempt=st.integers(min_value=0, max_value=200),
    hint=st.floats(min_value=0, max_value=120),
    seed=st.integers(),
)
def test_the_delay_is_within_half_and_all_of_the_ceiling_and_honours_the_hint(
    attempt: int, hint: float, seed: int
) -> None:
    """Never zero, never above the cap unless the hint says so, never below the hint."""
    delay = reconnect_delay(attempt, rng=random.Random(seed), hint_s=hint)
    ceiling = min(CAP_S, 0.5 * 2.0**attempt)
    assert delay >= hint
    assert ceiling / 2 <= delay <= max(ceiling, hint)


def test_a_seeded_generator_gives_the_same_waits() -> None:
    """The draw is the caller's: the same seed, the same delays."""
    first = [reconnect_delay(n, rng=random.Random(7)) for n in range(5)]
    assert first == [reconnect_delay(n, rng=random.Random(7)) for n in range(5)]
