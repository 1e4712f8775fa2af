"""Ctrl-C: an interrupted ``harness run`` leaves no Toxiproxy, reference server or proxy behind."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.toxiproxy]

HARNESS = Path(sys.executable).with_name("harness")
T = TypeVar("T")

LONG_WAIT = """\
name: a long real-clock wait
clock: real
timeout: 5m
steps:
  - connect:
  - chat: 1
  - wait: 2m
"""


@dataclass(frozen=True)
class Child:
    """A process the harness started, as /proc shows it."""

    pid: int
    cmdline: str


def children_of(parent: int) -> list[Child]:
    """The live (not zombie) processes whose parent is ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if int(ppid) == parent and state != "Z":
                found.append(Child(int(entry.name), cmdline))
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not exited (a zombie has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def poll(what: str, check: Callable[[], T | None], timeout: float) -> T:
    """Call ``check`` until it returns something other than None; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def get_json(url: str) -> object | None:
    """GET ``url`` and decode its JSON, or None if nothing answers."""
    try:
        decoded: object = httpx.get(url, timeout=1.0, trust_env=False).json()
    except httpx.HTTPError:
        return None
    return decoded


def get_text(url: str) -> str | None:
    """GET ``url`` as text, or None if nothing answers."""
    try:
        return httpx.get(url, timeout=1.0, trust_env=False).text
    except httpx.HTTPError:
        return None


@dataclass
class Harness:
    """A ``harness run`` subprocess and the children of it the test has seen."""

    process: subprocess.Popen[bytes]
    seen: list[Child] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    """``harness run`` of a scenario with a 2 min real-clock wait, in its own session.

    Whatever the test does, nothing it started outlives it: leftovers are killed by pid.
    """
    (tmp_path / "long.yaml").write_text(LONG_WAIT, encoding="utf-8")
    process = subprocess.Popen(
        [str(HARNESS), "run", "long.yaml", "--report-dir", str(tmp_path / "reports")],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    run = Harness(process)
    try:
        yield run
    finally:
        for child in [*run.seen, *children_of(process.pid)]:
            if running(child.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def started_children(harness: Harness) -> tuple[Child, Child | None]:
    """Wait for the harness's Toxiproxy; return it and the reference server, if started yet."""

    def toxiproxy() -> Child | None:
        return next((c for c in children_of(harness.pid) if "toxiproxy" in c.cmdline), None)

    proxy_server = poll("the harness's toxiproxy-server", toxiproxy, 15.0)
    server = next((c for c in children_of(harness.pid) if "reference_server" in c.cmdline), None)
    return proxy_server, server


def api_url(toxiproxy: Child) -> str:
    """The control API of a Toxiproxy started as ``toxiproxy-server -host H -port P``."""
    match = re.search(r"-host (\S+) -port (\d+)", toxiproxy.cmdline)
    assert match is not None, toxiproxy.cmdline
    return f"http://{match[1]}:{match[2]}"


def wait_until_waiting(harness: Harness) -> tuple[Child, Child, str]:
    """Wait until the scenario is in its long wait: proxy made, client connected and answered.

    Returns the Toxiproxy, the reference server and the server's store folder.
    """
    toxiproxy, _ = started_children(harness)
    api = api_url(toxiproxy)

    def upstream() -> str | None:
        proxies = get_json(f"{api}/proxies")
        if not isinstance(proxies, dict) or not proxies:
            return None
        (proxy,) = proxies.values()
        return str(proxy["upstream"])

    server_address = poll("the scenario's proxy", upstream, 15.0)

    def chatted() -> bool | None:
        text = get_text(f"http://{server_address}/metrics") or ""
        received = re.search(r"^ws_messages_received_total (\S+)$", text, re.MULTILINE)
        return True if received and float(received[1]) >= 2 else None

    poll("the client's hello and chat message", chatted, 15.0)
    time.sleep(0.3)  # the reply takes milliseconds: the scenario is now in its 2 min wait
    server = next(c for c in children_of(harness.pid) if "reference_server" in c.cmdline)
    store = re.search(r"--store sqlite:(\S+)/sessions\.db", server.cmdline)
    assert store is not None, server.cmdline
    return toxiproxy, server, store[1]


def assert_cleaned_up(harness: Harness, children: list[Child], api: str) -> None:
    """The harness exited on its own within 15 s and took every child and proxy with it."""
    try:
        _, err = harness.process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("the harness was still running 15 s after SIGINT")
    assert 0 != harness.process.returncode, err.decode(errors="replace")
    # Children are reaped by the harness before it exits; allow the kernel a moment anyway.
    deadline = time.monotonic() + 5.0
    while (left := [c for c in children if running(c.pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [] == left
    assert None is get_json(f"{api}/proxies")


def test_sigint_while_a_scenario_waits_stops_every_child(
    harness: Harness,
) -> None:
    """SIGINT to the harness in the middle of a scenario's wait makes it exit within 15 s and
    stop its Toxiproxy (so its proxy is gone) and the reference server, removing its store."""
    toxiproxy, server, store = wait_until_waiting(harness)
    harness.seen.extend([toxiproxy, server])
    assert Path(store).is_dir()
    harness.process.send_signal(signal.SIGINT)
    assert_cleaned_up(harness, [toxiproxy, server], api_url(toxiproxy))
    assert not Path(store).exists()


def test_ctrl_c_to_the_process_group_stops_every_child(
    harness: Harness,
) -> None:
    """Ctrl-C in a terminal (SIGINT to the whole foreground process group) also leaves nothing:
    the reference server runs in its own session, so only the harness can stop it."""
    toxiproxy, server, _ = wait_until_waiting(harness)
    harness.seen.extend([toxiproxy, server])
    os.killpg(harness.pid, signal.SIGINT)
    assert_cleaned_up(harness, [toxiproxy, server], api_url(toxiproxy))


def test_sigint_during_startup_stops_every_child(harness: Harness) -> None:
    """SIGINT as soon as the harness's Toxiproxy exists (the scenario still starting) also
    leaves no process behind."""
    toxiproxy, server = started_children(harness)
    harness.seen.append(toxiproxy)
    harness.process.send_signal(signal.SIGINT)
    late = children_of(harness.pid)  # a server spawned while the signal was on its way
    harness.seen.extend(late)
    children = [toxiproxy, *([server] if server else []), *late]
    assert_cleaned_up(harness, children, api_url(toxiproxy))
