"""Finding, starting and stopping a real Toxiproxy server, and ``harness doctor``."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import httpx
import pytest

from harness import exit_codes
from harness.cli import main
from harness.errors import HarnessInfrastructureError, ToxiproxyNotFoundError, ToxiproxyStartError
from harness.faults import toxiproxy_server
from harness.faults.toxiproxy_server import (
    TOXIPROXY_VERSION,
    ToxiproxyServer,
    find_toxiproxy_server,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _write_script(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def no_external_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the harness launch its own server even if the developer set TOXIPROXY_URL."""
    monkeypatch.delenv("TOXIPROXY_URL", raising=False)


@pytest.fixture
def no_toxiproxy_anywhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_external_server: None
) -> None:
    """Hide every place a Toxiproxy binary could be found."""
    monkeypatch.delenv("TOXIPROXY_SERVER", raising=False)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(toxiproxy_server, "PACKAGE_DIR", tmp_path)


@pytest.mark.toxiproxy
@pytest.mark.asyncio
async def test_installed_binary_answers_version_on_a_loopback_port(
    no_external_server: None,
) -> None:
    """The installed binary starts on a free 127.0.0.1 port and reports the pinned version."""
    async with ToxiproxyServer() as server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url) is not None
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            response = await client.get(f"{server.url}/version")
        assert 200 == response.status_code
        assert TOXIPROXY_VERSION == response.json()["version"]
        assert TOXIPROXY_VERSION == server.version


@pytest.mark.toxiproxy
@pytest.mark.asyncio
async def test_two_servers_at_once_get_different_ports(no_external_server: None) -> None:
    """Two servers started together listen on different ports and are different processes."""
    async with ToxiproxyServer() as first, ToxiproxyServer() as second:
        assert first.url != second.url
        assert first.pid != second.pid
        assert TOXIPROXY_VERSION == first.version
        assert TOXIPROXY_VERSION == second.version


@pytest.mark.toxiproxy
@pytest.mark.asyncio
async def test_process_is_gone_after_the_context_exits(no_external_server: None) -> None:
    """Leaving the context stops the server process, and a second stop() is harmless."""
    async with ToxiproxyServer() as server:
        pid = server.pid
        assert pid is not None
        assert True is _process_exists(pid)
    assert False is _process_exists(pid)
    await server.stop()
    assert False is _process_exists(pid)


@pytest.mark.toxiproxy
@pytest.mark.asyncio
async def test_external_url_starts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """With TOXIPROXY_URL set the harness uses that server and launches no process."""
    monkeypatch.delenv("TOXIPROXY_URL", raising=False)
    async with ToxiproxyServer() as owned:
        monkeypatch.setenv("TOXIPROXY_URL", owned.url)
        async with ToxiproxyServer() as external:
            assert owned.url == external.url
            assert None is external.pid
            assert TOXIPROXY_VERSION == external.version


@pytest.mark.toxiproxy
@pytest.mark.asyncio
async def test_port_taken_by_another_toxiproxy_is_retried_on_a_new_port(
    no_external_server: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A launch whose port another Toxiproxy holds is not mistaken for ours; it retries."""
    async with ToxiproxyServer() as holder:
        taken_port = int(holder.url.rsplit(":", 1)[1])
        real_free_port = toxiproxy_server._free_loopback_port
        ports = iter([taken_port])
        monkeypatch.setattr(
            toxiproxy_server, "_free_loopback_port", lambda: next(ports, None) or real_free_port()
        )
        async with ToxiproxyServer(keep_log=True, log_dir=tmp_path) as second:
            assert holder.url != second.url
            assert second.log_path is not None
            assert "toxiproxy-2.log" == second.log_path.name
            first_log = (second.log_path.parent / "toxiproxy-1.log").read_text(encoding="utf-8")
            assert "address already in use" in first_log
            assert TOXIPROXY_VERSION == second.version


def test_missing_binary_raises_with_install_instructions(no_toxiproxy_anywhere: None) -> None:
    """Without any binary, the error is an infrastructure error that says how to install one."""
    with pytest.raises(ToxiproxyNotFoundError) as caught:
        find_toxiproxy_server()
    message = str(caught.value)
    assert isinstance(caught.value, HarnessInfrastructureError)
    assert "go install" in message
    assert "scripts/setup" in message
    assert f"github.com/Shopify/toxiproxy/v2/cmd/server@v{TOXIPROXY_VERSION}" in message


def test_toxiproxy_server_variable_naming_nothing_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """TOXIPROXY_SERVER pointing at a file that does not exist fails and names the variable."""
    missing = tmp_path / "no-such-toxiproxy-server"
    monkeypatch.setenv("TOXIPROXY_SERVER", str(missing))
    with pytest.raises(ToxiproxyNotFoundError, match="TOXIPROXY_SERVER") as caught:
        find_toxiproxy_server()
    assert str(missing) in str(caught.value)


def test_toxiproxy_server_variable_wins_over_the_tools_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An executable named by TOXIPROXY_SERVER is used before .tools/bin and PATH."""
    binary = _write_script(tmp_path / "my-toxiproxy", "exit 0")
    monkeypatch.setenv("TOXIPROXY_SERVER", str(binary))
    assert binary.resolve() == find_toxiproxy_server()


def test_tools_folder_is_found_from_a_subdirectory(
    no_toxiproxy_anywhere: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """.tools/bin/toxiproxy-server in an ancestor of the working directory is found."""
    tools_bin = tmp_path / ".tools" / "bin"
    tools_bin.mkdir(parents=True)
    binary = _write_script(tools_bin / "toxiproxy-server", "exit 0")
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    assert binary.resolve() == find_toxiproxy_server()


@pytest.mark.asyncio
async def test_binary_that_exits_at_once_fails_after_retries(
    no_external_server: None, tmp_path: Path
) -> None:
    """A server that exits immediately is retried, then fails with the tail of its log."""
    binary = _write_script(tmp_path / "broken", "echo 'cannot start: broken on purpose'\nexit 1")
    server = ToxiproxyServer(binary=binary, startup_timeout=5.0, log_dir=tmp_path)
    with pytest.raises(ToxiproxyStartError) as caught:
        await server.start()
    message = str(caught.value)
    assert "cannot start: broken on purpose" in message
    assert "attempt 3" in message
    assert server.pid is not None
    assert False is _process_exists(server.pid)


@pytest.mark.asyncio
async def test_server_that_never_answers_is_stopped(
    no_external_server: None, tmp_path: Path
) -> None:
    """A process that never answers GET /version fails the start and is not left running."""
    binary = _write_script(tmp_path / "silent", "exec sleep 60")
    server = ToxiproxyServer(binary=binary, startup_timeout=0.5, stop_timeout=1.0, log_dir=tmp_path)
    with pytest.raises(ToxiproxyStartError, match="did not answer in time"):
        await server.start()
    assert server.pid is not None
    assert False is _process_exists(server.pid)


@pytest.mark.toxiproxy
def test_doctor_succeeds_with_the_binary(
    no_external_server: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """`harness doctor` with the installed binary exits 0 and prints path, version and URL."""
    assert exit_codes.OK == main(["doctor"])
    out = capsys.readouterr().out
    assert "toxiproxy-server" in out
    assert TOXIPROXY_VERSION in out
    assert "http://127.0.0.1:" in out


def test_doctor_without_the_binary_exits_3_with_instructions(
    no_toxiproxy_anywhere: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """`harness doctor` without a binary exits 3 and prints the install instructions."""
    assert exit_codes.INFRASTRUCTURE_ERROR == main(["doctor"])
    err = capsys.readouterr().err
    assert "go install" in err
    assert "scripts/setup" in err


def test_setup_script_pins_the_same_version() -> None:
    """scripts/setup installs the version the harness expects."""
    setup = (REPO_ROOT / "scripts" / "setup").read_text(encoding="utf-8")
    pinned = re.search(r'^TOXIPROXY_VERSION="([^"]+)"$', setup, re.MULTILINE)
    assert pinned is not None
    assert TOXIPROXY_VERSION == pinned.group(1)


def test_cli_version_and_usage_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """`--version` exits 0 with the version; no command or an unknown one is a usage error."""
    assert exit_codes.OK == main(["--version"])
    assert "harness 0.1.0" in capsys.readouterr().out
    assert exit_codes.USAGE_ERROR == main([])
    assert exit_codes.USAGE_ERROR == main(["no-such-command"])
