"""Pointing at a server someone else runs: per-user credentials, load consent, and the errors
a user sees, in their words. The reference server is started here as that external server."""

from __future__ import annotations

import asyncio
import os
import secrets
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from websockets.asyncio.server import serve

from harness import cli, exit_codes
from harness.driver.base import ClientConfig, DriverError
from harness.driver.reference import ReferenceDriver
from reference_server import auth
from reference_server.launcher import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.toxiproxy, pytest.mark.asyncio]


class Staging:
    """An external reference server: its URL and how to mint its users' tokens."""

    def __init__(self, url: str, secret: str) -> None:
        self.url, self.secret = url, secret

    def token(self, user: str) -> str:
        return auth.mint(user, self.secret)


@pytest_asyncio.fixture
async def staging(tmp_path: Path) -> AsyncIterator[Staging]:
    secret = secrets.token_urlsafe(32)
    server = ServerProcess(
        ["--store", f"sqlite:{tmp_path / 's.db'}", "--trusted-proxy", "127.0.0.1/32"],
        env={"REFERENCE_SERVER_AUTH_SECRET": secret},
        log_path=tmp_path / "server.log",
    )
    url = await server.start()
    try:
        yield Staging(url, secret)
    finally:
        await server.stop()


TWO_USERS = """\
name: another user cannot take a session over
clock: real
clients:
  - name: alice
  - name: mallory
steps:
  - connect: {client: alice}
  - chat: {client: alice, messages: 1}
  - resume: {client: mallory, session_of: alice, expect: rejected, reason: auth_failed}
  - expect:
      client: alice
      history: {count: 2}
"""


async def test_each_simulated_user_logs_in_with_its_own_credential_never_shown(
    staging: Staging, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two users, one credential each (an environment variable, and a command that mints a
    fresh token): a stranger's takeover is refused, and neither token appears in any report,
    in the output, or in the results file."""
    scenario = tmp_path / "two_users.yaml"
    scenario.write_text(TWO_USERS, encoding="utf-8")
    alice = staging.token("alice")
    monkeypatch.setenv("ALICE_TOKEN", alice)
    # A command that prints the user's token (a team's would mint one; this one prints a
    # known token, so the test can look for it in every output).
    minted = staging.token("mallory")
    (tmp_path / "mallory.token").write_text(minted, encoding="utf-8")
    mint = f"cat {tmp_path}/{{user}}.token"
    reports = tmp_path / "reports"
    args = [
        sys.executable,
        "-m",
        "harness",
        "run",
        str(scenario),
        "--target",
        staging.url,
        "--credential",
        "alice=env:ALICE_TOKEN",
        "--credential",
        f"mallory=cmd:{mint}",
        "--report-dir",
        str(reports),
    ]
    done = await asyncio.to_thread(
        subprocess.run, args, capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )
    assert exit_codes.OK == done.returncode, done.stdout + done.stderr
    outputs = [done.stdout, done.stderr]
    outputs += [p.read_text(encoding="utf-8") for p in (reports / "latest").iterdir()]
    for text in outputs:
        assert alice not in text
        assert minted not in text


LOAD = """\
name: twenty clients at once
clock: real
steps:
  - parallel:
      clients: 20
      steps:
        - connect:
        - chat: 1
"""


async def test_load_needs_consent_and_the_report_records_it(
    staging: Staging, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty connections at once against an external target are skipped without consent,
    and run with --allow-load 21, which the report records."""
    scenario = tmp_path / "load.yaml"
    scenario.write_text(LOAD, encoding="utf-8")
    monkeypatch.setenv("REFERENCE_SERVER_AUTH_SECRET", staging.secret)
    mint = f"cmd:{sys.executable} -m reference_server mint-token --user {{user}}"
    base = ["run", str(scenario), "--target", staging.url, "--credential", f"*={mint}"]
    refused = await asyncio.to_thread(cli.main, [*base, "--report-dir", str(tmp_path / "a")])
    assert exit_codes.NOTHING_VERIFIED == refused
    report = (tmp_path / "a" / "latest" / "report.md").read_text()
    assert "needs consent for load: 21 connections at once" in report
    allowed = [*base, "--allow-load", "21", "--report-dir", str(tmp_path / "b")]
    assert exit_codes.OK == await asyncio.to_thread(cli.main, allowed)
    report = (tmp_path / "b" / "latest" / "report.md").read_text()
    assert "**load consent:** up to 21 connections at once (--allow-load 21)" in report


async def test_a_target_that_refuses_connections_is_named_in_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listening at the target: an infrastructure error naming the address, once."""
    monkeypatch.setenv("T", "x")
    path = tmp_path / "one.yaml"
    path.write_text("name: one\nclock: real\nsteps:\n  - connect:\n", encoding="utf-8")
    args = ["run", str(path), "--target", "ws://127.0.0.1:9/ws", "--token-env", "T"]
    code = await asyncio.to_thread(cli.main, [*args, "--report-dir", str(tmp_path / "r")])
    assert exit_codes.INFRASTRUCTURE_ERROR == code
    out = capsys.readouterr().out
    assert "connection refused at 127.0.0.1:9 (ws://127.0.0.1:9/ws)" in out


def _driver(url: str, credential: str) -> ReferenceDriver:
    return ReferenceDriver(ClientConfig(name="c", url=url, credential=credential), lambda o: None)


async def test_a_refused_credential_says_401_with_the_servers_reason(staging: Staging) -> None:
    """A token the server does not accept: HTTP 401, said as such, with what the server said."""
    driver = _driver(staging.url, "not-a-token")
    with pytest.raises(DriverError) as caught:
        await driver.connect(5.0)
    said = str(caught.value)
    assert f"{staging.url} answered the WebSocket handshake with HTTP 401 (Unauthorized)" in said
    assert "(the credential was refused)" in said


async def test_a_wrong_path_says_404(staging: Staging) -> None:
    """A URL whose path the server does not serve: HTTP 404, with a hint about the path."""
    wrong = staging.url.rsplit("/", 1)[0] + "/nope"
    driver = _driver(wrong, staging.token("alice"))
    with pytest.raises(DriverError) as caught:
        await driver.connect(5.0)
    assert "HTTP 404 (Not Found) (is the path right?)" in str(caught.value)


async def test_a_tls_certificate_that_does_not_match_names_the_host(tmp_path: Path) -> None:
    """A wss:// server whose certificate is not trusted for the name: a TLS error naming it."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    made = await asyncio.to_thread(
        subprocess.run,
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=example.test",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"openssl could not make a certificate: {made.stderr.decode()[:200]}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    async def echo(ws: object) -> None:
        return None

    async with serve(echo, "127.0.0.1", 0, ssl=context) as server:
        port = server.sockets[0].getsockname()[1]
        url = f"wss://127.0.0.1:{port}/ws"
        with pytest.raises(DriverError) as caught:
            await _driver(url, "t").connect(5.0)
    said = str(caught.value)
    assert f"TLS: the certificate of {url} was not accepted for the name '127.0.0.1'" in said
