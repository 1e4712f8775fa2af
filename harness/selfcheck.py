"""``harness selfcheck``: the whole chain end to end, until the scenario runner exists.

Starts a real Toxiproxy and the reference server (a child process, SQLite store, virtual
clock), puts the server behind a proxy, and drives one protocol client through it: a
conversation, a proxy outage, a server crash (SIGKILL) and restart, and the three
disconnection windows. Every check compares what the client saw with what the server holds,
and the run writes a markdown report of what it measured.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import platform
import secrets
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from harness import exit_codes
from harness.errors import HarnessInfrastructureError
from harness.faults.toxiproxy_client import ToxiproxyClient
from harness.faults.toxiproxy_server import ToxiproxyServer
from reference_server import admin, auth
from reference_server.aio_client import AsyncClient
from reference_server.launcher import ServerProcess
from reference_server.protocol import Attached, DuplicateDelivery, RejectedByServer
from reference_server.protocol.messages import AgentContextData, ReplyChunk

CONVERSATION = (
    "my name is Ada",
    "remember that city is Lyon",
    "set budget = 1200",
    "what is budget * 2",
    "I prefer short answers",
)


@dataclass
class Check:
    """One verdict with the evidence it rests on."""

    name: str
    passed: bool
    evidence: str
    seconds: float


@dataclass
class SelfcheckRun:
    """Everything one run measured."""

    started: dt.datetime
    checks: list[Check] = field(default_factory=list)
    resume_latencies: list[float] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)


class _FailedError(Exception):
    pass


async def _check(run: SelfcheckRun, name: str, body: Callable[[], Awaitable[str]]) -> None:
    started = time.perf_counter()
    try:
        evidence = await body()
        passed = True
    except (_FailedError, AssertionError, TimeoutError) as exc:
        evidence, passed = f"{type(exc).__name__}: {exc}", False
    run.checks.append(Check(name, passed, evidence, time.perf_counter() - started))
    print(f"  {'PASS' if passed else 'FAIL'}  {name}: {evidence}", flush=True)


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise _FailedError(message)


async def selfcheck(report_dir: Path) -> int:
    """Run the chain; write the report; return an exit code."""
    run = SelfcheckRun(started=dt.datetime.now(dt.UTC))
    workdir = Path(tempfile.mkdtemp(prefix="harness-selfcheck-"))
    secret = secrets.token_urlsafe(32)
    admin_token = secrets.token_urlsafe(16)
    env = {"REFERENCE_SERVER_AUTH_SECRET": secret, "REFERENCE_SERVER_ADMIN_TOKEN": admin_token}
    args = [
        "--store",
        f"sqlite:{workdir / 'sessions.db'}",
        "--virtual-clock",
        "--chunk-delay",
        "0.002",
    ]
    try:
        async with (
            ToxiproxyServer() as toxiproxy,
            ServerProcess(args, env=env, log_path=workdir / "server.log") as server,
            ToxiproxyClient(toxiproxy.url) as api,
        ):
            run.environment = {
                "target": f"embedded reference server {server.url} (SQLite store, virtual clock)",
                "toxiproxy": f"{toxiproxy.version} at {toxiproxy.url}",
                "python": platform.python_version(),
                "platform": f"{platform.system()} {platform.release()} ({os.cpu_count()} cores)",
            }
            proxy = await api.create_proxy(
                f"selfcheck-{secrets.token_hex(3)}", f"127.0.0.1:{server.port}"
            )
            url = f"ws://127.0.0.1:{proxy.port}/ws"
            client = AsyncClient(url, auth.mint("selfcheck-user", secret))
            try:
                await _scenario(run, client, server, api, proxy.name, admin_token)
            finally:
                await client.drop()
                await api.delete_proxy(proxy.name)
    except HarnessInfrastructureError as exc:
        print(f"infrastructure error: {exc}")
        return exit_codes.INFRASTRUCTURE_ERROR
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    path = write_report(run, report_dir)
    failed = sum(not c.passed for c in run.checks)
    print(f"\n{len(run.checks) - failed} passed, {failed} failed")
    print(f"report: {path}")
    return exit_codes.OK if run.passed else exit_codes.SCENARIO_FAILED


async def _scenario(
    run: SelfcheckRun,
    client: AsyncClient,
    server: ServerProcess,
    api: ToxiproxyClient,
    proxy: str,
    admin_token: str,
) -> None:
    state: dict[str, AgentContextData] = {}

    async def resume_timed() -> Attached | RejectedByServer:
        started = time.perf_counter()
        answer = await client.resume()
        run.resume_latencies.append(time.perf_counter() - started)
        return answer

    async def advance(seconds: float) -> None:
        # The gap starts when the server notices the drop: wait for that before jumping.
        await _until_no_connections(server.url)
        await admin.advance_clock(server.url, admin_token, seconds)

    async def conversation() -> str:
        attached = await client.connect()
        _expect(isinstance(attached, Attached), f"connect gave {attached}")
        for text in CONVERSATION:
            reply = await client.chat(text)
            _expect(
                any(isinstance(m, ReplyChunk) and m.final for m in reply),
                f"no final chunk for {text!r}",
            )
        history = await client.history()
        _expect(10 == history.total, f"server holds {history.total} turns, expected 10")
        state["context"] = (await client.agent_context()).context
        return f"5 turns answered, server holds {history.total} history entries"

    async def proxy_outage() -> str:
        await api.set_enabled(proxy, False)
        await client.wait_for(
            lambda: (not client.connected) or None, 5, "the client to see the drop"
        )
        await advance(15)
        await api.set_enabled(proxy, True)
        return await _resumed_intact(
            client, resume_timed, state, "full", "proxy down for 15 s (virtual)"
        )

    async def server_crash() -> str:
        await client.send_user_message("what is 7 * 6")  # in flight when the server dies
        await server.restart(hard=True)
        await client.wait_for(
            lambda: (not client.connected) or None, 5, "the client to see the crash"
        )
        evidence = await _resumed_intact(client, resume_timed, state, "full", "SIGKILL and restart")
        replies = [m for m in client.delivered if isinstance(m, ReplyChunk) and m.final]
        _expect(6 == len(replies), f"{len(replies)} complete replies, expected 6 (each once)")
        return evidence + "; the message in flight was answered once"

    async def medium_gap() -> str:
        await client.drop()
        await advance(120)
        return await _resumed_intact(client, resume_timed, state, "degraded", "2 min gap (virtual)")

    async def long_gap() -> str:
        await client.drop()
        await advance(600)
        answer = await client.resume()
        _expect(isinstance(answer, RejectedByServer), f"resume after 10 min gave {answer}")
        assert isinstance(answer, RejectedByServer)
        _expect("session_expired" == answer.reason, f"rejected with {answer.reason}")
        fresh = await client.connect()
        _expect(isinstance(fresh, Attached), f"fresh session gave {fresh}")
        history = await client.history()
        _expect(0 == history.total, f"a fresh session sees {history.total} old entries")
        return "resume rejected as session_expired; a fresh session starts empty"

    await _check(run, "conversation through the proxy", conversation)
    await _check(run, "proxy outage, 15 s gap: resume full", proxy_outage)
    await _check(run, "server killed and restarted: resume full", server_crash)
    await _check(run, "2 min gap: resume degraded, context kept", medium_gap)
    await _check(run, "10 min gap: session expired", long_gap)


async def _until_no_connections(url: str, timeout: float = 5.0) -> None:
    metrics_url = url.replace("ws://", "http://").rsplit("/", 1)[0] + "/metrics"
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as http, asyncio.timeout(timeout):
        while True:
            text = (await http.get(metrics_url)).text
            if "\nws_connections 0.0\n" in text:
                return
            await asyncio.sleep(0.01)


async def _resumed_intact(
    client: AsyncClient,
    resume: Callable[[], Awaitable[Attached | RejectedByServer]],
    state: dict[str, AgentContextData],
    outcome: str,
    what: str,
) -> str:
    answer = await resume()
    _expect(isinstance(answer, Attached), f"{what}: resume gave {answer}")
    assert isinstance(answer, Attached)
    _expect(outcome == answer.outcome, f"{what}: outcome {answer.outcome}, expected {outcome}")
    seqs = [m.seq for m in client.delivered]
    _expect(list(range(1, len(seqs) + 1)) == seqs, f"{what}: delivered seqs not 1..n: {seqs[-5:]}")
    duplicates = [e for e in client.events if isinstance(e, DuplicateDelivery)]
    _expect(
        not duplicates and not client.errors,
        f"{what}: duplicates {duplicates} errors {client.errors}",
    )
    context = (await client.agent_context()).context
    before = state["context"]
    _expect(before.memory == context.memory, f"{what}: memory {context.memory} != {before.memory}")
    _expect(before.variables == context.variables, f"{what}: variables changed")
    _expect(before.preferences == context.preferences, f"{what}: preferences changed")
    _expect(
        before.tool_calls == context.tool_calls[: len(before.tool_calls)],
        f"{what}: tool calls lost",
    )
    state["context"] = context
    warnings = ", ".join(w.code for w in answer.warnings) or "none"
    return (
        f"{what}: outcome {answer.outcome}, gap {answer.gap_s:.1f} s, "
        f"replayed {answer.replay_count}, warnings {warnings}; "
        f"{len(seqs)} messages delivered once each; context equal"
    )


def write_report(run: SelfcheckRun, report_dir: Path) -> Path:
    """Write ``selfcheck.md`` under ``report_dir/<timestamp>/`` and ``report_dir/latest/``."""
    stamp = run.started.strftime("%Y%m%dT%H%M%SZ")
    lines = [
        "# Harness self-check",
        "",
        f"**Date:** {run.started.strftime('%Y-%m-%d %H:%M:%S UTC')}  ",
        f"**Result:** {'PASSED' if run.passed else 'FAILED'} "
        f"({sum(c.passed for c in run.checks)}/{len(run.checks)} checks)",
        "",
        "A real Toxiproxy in front of the reference server (a child process); one protocol client",
        "through the proxy. Every figure below was measured in this run.",
        "",
        "| check | result | evidence | seconds |",
        "|---|---|---|---:|",
    ]
    lines += [
        f"| {c.name} | {'pass' if c.passed else '**FAIL**'} | {c.evidence} | {c.seconds:.3f} |"
        for c in run.checks
    ]
    if run.resume_latencies:
        ms = sorted(x * 1000 for x in run.resume_latencies)
        lines += [
            "",
            "## Resume latency (through the proxy)",
            "",
            f"{len(ms)} resumes: median {statistics.median(ms):.1f} ms, max {ms[-1]:.1f} ms.",
        ]
    lines += ["", "## Environment", ""]
    lines += [f"- **{key}:** {value}" for key, value in run.environment.items()]
    text = "\n".join(lines) + "\n"
    for folder in (report_dir / stamp, report_dir / "latest"):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "selfcheck.md").write_text(text, encoding="utf-8")
    return report_dir / stamp / "selfcheck.md"
