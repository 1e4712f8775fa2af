"""``bench.throughput.cpu_seconds``: a process's CPU time from the scheduler's nanosecond counts."""

from __future__ import annotations

import subprocess
import sys
import time

from bench.throughput import cpu_seconds, tick_cpu_seconds

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"


def test_it_counts_what_a_child_burned_as_the_clock_ticks_do() -> None:
    child = subprocess.Popen([sys.executable, "-c", BURN + "time.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while tick_cpu_seconds(child.pid) < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)
        ticks, precise = tick_cpu_seconds(child.pid), cpu_seconds(child.pid)
        assert ticks >= 0.3
        assert abs(precise - ticks) < 0.05, (precise, ticks)  # ticks are 10 ms each
    finally:
        child.kill()
        child.wait(10)


def test_no_process_is_no_time() -> None:
    assert cpu_seconds(None) == 0.0
