"""How long a client waits before a reconnection attempt (docs/protocol.md §14.1), sans-I/O.

The randomness comes in as an argument, so a seeded harness reproduces its own waits.
"""

from __future__ import annotations

import random

BASE_S = 0.5
CAP_S = 30.0


def reconnect_delay(
    attempt: int,
    *,
    rng: random.Random,
    base_s: float = BASE_S,
    cap_s: float = CAP_S,
    hint_s: float = 0.0,
) -> float:
    """§14.1: ``d = min(cap, base * 2**attempt)``, then a uniform draw in ``[d/2, d]`` (never
    a retry at once, still spread out), and never below the server's hint."""
    if attempt < 0:
        raise ValueError("attempt counts from 0")
    ceiling = min(cap_s, base_s * 2.0 ** min(attempt, 64))
    return max(hint_s, rng.uniform(ceiling / 2, ceiling))
