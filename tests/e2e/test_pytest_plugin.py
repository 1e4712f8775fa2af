"""The ws_continuity pytest plugin: scenario files as pytest items, and its fixtures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.checkers import Verdict
from harness.faults.toxiproxy_server import ToxiproxyServer
from harness.pytest_plugin import ClientFactory, ProxiedURL, describe_failure, looks_like_scenario
from harness.results import ScenarioResult, StepResult
from reference_server.app import ReferenceServer
from reference_server.clock import VirtualClock
from reference_server.protocol import Attached

ROOT = Path(__file__).resolve().parents[2]

FAILING = """\
name: expects degraded after a short gap
clock: virtual
steps:
  - connect:
  - chat: 2
  - drop: reset
  - wait: 5s
  - resume: degraded
"""

DUPLICATE = """\
name: a planted duplicate is caught
clock: virtual
plant_fault: duplicate_replay
steps:
  - connect:
  - chat: {messages: 1}
  - fault: {toxic: timeout, timeout: 0s, stream: downstream}
  - chat: {text: "answered into the void", timeout: 1s, expect: timeout}
  - heal:
  - resume: full
  - chat: {messages: 1}
  - expect:
      delivery: {no_loss: true, no_duplicates: true, order: true}
"""

BROKEN = """\
name: broken
steps:
  - connect:
  - dorp: reset
"""

PASSING = """\
name: connects
steps:
  - connect:
"""

UNRELATED = """\
name: some other tool's file
version: 3
"""


def run_pytest(
    *args: str, cwd: Path = ROOT, timeout: float = 50
) -> subprocess.CompletedProcess[str]:
    """Run pytest in a child process of this interpreter; the plugin loads by its entry point."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write_folder(folder: Path, files: dict[str, str], ini: str = "") -> Path:
    """Write ``files`` under ``folder`` with a pytest.ini (so the child's rootdir is ``folder``)."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = "[pytest]\nasyncio_default_fixture_loop_scope = function\n" + ini
    (folder / "pytest.ini").write_text(settings, encoding="utf-8")
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


# --- scenario files as pytest items ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.toxiproxy
def test_seed_suite_passes_as_eight_pytest_items(tmp_path: Path) -> None:
    """`pytest scenarios/seed` runs the eight seed scenarios as eight passing items, and reports."""
    result = run_pytest("scenarios/seed", "-q", "--ws-report-dir", str(tmp_path))
    assert 0 == result.returncode, result.stdout + result.stderr
    assert "8 passed" in result.stdout
    record = json.loads((tmp_path / "latest" / "results.json").read_text(encoding="utf-8"))
    assert ["passed"] * 8 == [s["status"] for s in record["scenarios"]]
    assert "scenarios/seed/01_basic_history.yaml" == record["scenarios"][0]["file"]
    assert {"junit.xml", "report.md", "results.json", "report.html"} == {
        p.name for p in (tmp_path / "latest").iterdir()
    }
    assert f"ws-continuity report: {tmp_path}" in result.stdout


@pytest.mark.slow
@pytest.mark.toxiproxy
def test_failures_name_the_step_expected_seen_and_evidence(tmp_path: Path) -> None:
    """A failing scenario's item names its step, what was expected, what was seen, the evidence."""
    folder = write_folder(
        tmp_path / "suite",
        {
            "gap.yaml": FAILING,
            "duplicate.yaml": DUPLICATE,
            "broken.yaml": BROKEN,
            "unrelated.yaml": UNRELATED,
        },
    )
    result = run_pytest(str(folder), "-q", "-ra")
    out = result.stdout
    assert 1 == result.returncode, out + result.stderr
    assert "3 failed" in out
    assert "unrelated" not in out
    assert "step 5 (resume) failed: expected resume degraded; saw full" in out
    assert "  expected: resume degraded\n  seen:     full\n" in out
    assert "step 8 (expect) failed: expected delivery to hold" in out
    assert "duplicated=[5]\n" in out
    assert "broken.yaml:4:5: steps[1]: unknown step kind `dorp` (did you mean 'drop'?)" in out


@pytest.mark.slow
@pytest.mark.toxiproxy
def test_a_scenario_the_target_cannot_run_is_a_skipped_item(tmp_path: Path) -> None:
    """Against an external target, a scenario that needs a planted fault is skipped with why."""
    folder = write_folder(tmp_path / "suite", {"duplicate.yaml": DUPLICATE})
    result = run_pytest(str(folder), "-q", "-rs", "--ws-target", "ws://127.0.0.1:9/ws")
    assert 0 == result.returncode, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert "scenario needs target capability 'embedded'" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), []),
        (("tests",), []),
        (("--scenarios",), ["tests/in_tests.yaml::connects"]),
        (("tests/in_tests.yaml",), ["tests/in_tests.yaml::connects"]),
        (("suite",), ["suite/one.yaml::connects"]),
        (("--scenarios", "suite"), ["suite/one.yaml::connects"]),
    ],
)
def test_collection_rule(tmp_path: Path, args: tuple[str, ...], expected: list[str]) -> None:
    """YAML is collected under named paths outside testpaths, a named file, or with --scenarios."""
    folder = write_folder(
        tmp_path / "project",
        {
            "tests/in_tests.yaml": PASSING,
            "tests/test_nothing.py": '"""No tests."""\n',
            "suite/one.yaml": PASSING,
            "suite/unrelated.yml": UNRELATED,
        },
        ini="testpaths = tests\n",
    )
    result = run_pytest("--collect-only", "-q", *args, cwd=folder)
    collected = [line for line in result.stdout.splitlines() if "::" in line]
    assert expected == collected, result.stdout + result.stderr


@pytest.mark.slow
def test_importing_the_plugin_is_cheap() -> None:
    """Importing the plugin loads neither the harness's engine nor its network libraries."""
    heavy = ["harness.engine", "harness.scenario", "reference_server.app", "msgspec", "yaml"]
    heavy += ["httpx", "websockets"]
    code = (
        "import sys, harness.pytest_plugin; "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert "[]" == result.stdout.strip()


# --- fixtures --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_reference_server_fixture_runs_with_a_virtual_clock(
    reference_server: ReferenceServer,
) -> None:
    """`reference_server` is a running in-process server with a virtual clock and memory store."""
    clock = reference_server.clock
    assert isinstance(clock, VirtualClock)
    assert "memory" == reference_server.config.store
    assert reference_server.url.startswith("ws://127.0.0.1:")
    before = clock.now()
    assert clock.advance(600) >= before + 600


@pytest.mark.asyncio
@pytest.mark.parametrize("reference_server", [{"path": "/chat"}], indirect=True)
async def test_reference_server_fixture_takes_config_overrides(
    reference_server: ReferenceServer,
) -> None:
    """Indirect parametrization of `reference_server` overrides fields of its ServerConfig."""
    assert reference_server.url.endswith("/chat")


@pytest.mark.asyncio
async def test_protocol_client_opens_a_session_with_a_valid_token(
    protocol_client: ClientFactory,
) -> None:
    """A client from `protocol_client` is accepted by the server and gets its replies."""
    client = protocol_client("bob")
    attached = await client.connect()
    assert isinstance(attached, Attached)
    assert "new" == attached.outcome
    assert [] != await client.chat("hello")


@pytest.mark.toxiproxy
def test_toxiproxy_fixture_is_a_running_server(toxiproxy: ToxiproxyServer) -> None:
    """`toxiproxy` is the session's running Toxiproxy, answering on loopback."""
    assert toxiproxy.url.startswith("http://127.0.0.1:")
    assert "" != toxiproxy.version


@pytest.mark.toxiproxy
@pytest.mark.asyncio
async def test_toxiproxy_proxy_carries_a_session_through_a_fault(
    reference_server: ReferenceServer,
    toxiproxy_proxy: ProxiedURL,
    protocol_client: ClientFactory,
) -> None:
    """Through `toxiproxy_proxy` a session survives the proxy going down and resumes in full."""
    assert f"127.0.0.1:{reference_server.port}" == toxiproxy_proxy.proxy.upstream
    assert toxiproxy_proxy.startswith(f"ws://{toxiproxy_proxy.proxy.listen}/")
    client = protocol_client(url=toxiproxy_proxy)
    assert "new" == getattr(await client.connect(), "outcome", None)
    await client.chat("before the fault")
    await toxiproxy_proxy.api.set_enabled(toxiproxy_proxy.proxy.name, False)
    await toxiproxy_proxy.api.set_enabled(toxiproxy_proxy.proxy.name, True)
    assert "full" == getattr(await client.resume(), "outcome", None)


# --- the failure text and the shape test, without a run ---------------------------------------


def test_failure_text_starts_with_the_step_and_carries_the_evidence() -> None:
    """The failure text opens with the failed step, then expected, seen, evidence and checks."""
    step = StepResult(
        path="4",
        kind="expect",
        status="failed",
        message="expected delivery to hold; saw position 5 was delivered twice",
        expected="delivery to hold",
        seen="position 5 was delivered twice",
        evidence={"duplicated": [5]},
        verdicts=[
            Verdict(
                check="delivery",
                passed=False,
                message="position 5 was delivered twice",
                evidence={"lost": []},
            )
        ],
    )
    result = ScenarioResult(
        name="doubled",
        file="s.yaml",
        status="failed",
        clock="virtual",
        steps=[StepResult(path="1", kind="connect", status="passed"), step],
    )
    lines = describe_failure(result).splitlines()
    assert [
        "step 4 (expect) failed: expected delivery to hold; saw position 5 was delivered twice",
        "  expected: delivery to hold",
        "  seen:     position 5 was delivered twice",
        "  evidence: duplicated=[5]",
        "  check delivery failed: position 5 was delivered twice (lost=[])",
        "scenario `doubled` (s.yaml): FAILED",
        "steps:",
    ] == lines[:7]


def test_failure_text_of_an_error_names_the_error() -> None:
    """A scenario that errored without a failed step says what the error was."""
    result = ScenarioResult(name="slow", file="s.yaml", status="error", error="timed out after 2 s")
    assert "error: timed out after 2 s" == describe_failure(result).splitlines()[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (PASSING, True),
        (BROKEN, True),
        (UNRELATED, False),
        ("steps:\n  - connect:\n", False),
        ("meta:\n  name: x\n  steps: []\n", False),
    ],
)
def test_only_files_with_top_level_name_and_steps_look_like_scenarios(
    tmp_path: Path, text: str, expected: bool
) -> None:
    """A YAML file looks like a scenario only with both `name:` and `steps:` at its top level."""
    path = tmp_path / "file.yaml"
    path.write_text(text, encoding="utf-8")
    assert expected == looks_like_scenario(path)
