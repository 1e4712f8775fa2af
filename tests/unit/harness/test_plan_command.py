"""`harness plan` and the selection options: what a run would do, with no socket opened."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import cli, exit_codes

ROOT = Path(__file__).resolve().parents[3]
SEED = str(ROOT / "scenarios" / "seed")
CHAOS = str(ROOT / "scenarios" / "chaos")
NOWHERE = "ws://127.0.0.1:9/ws"  # nothing listens on the discard port; plan never connects


def plan(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert exit_codes.OK == cli.main(["plan", *args])
    return capsys.readouterr().out


def test_plan_of_the_seed_suite_on_the_embedded_target_runs_everything(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Against the embedded server every seed scenario would run, on the virtual clock."""
    out = plan(capsys, SEED)
    assert "8 of 8 scenarios would run" in out
    assert "virtual" in out


def test_plan_against_a_target_without_clock_control_says_why_each_is_skipped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Virtual-clock scenarios are skipped against a target that has no clock control."""
    out = plan(capsys, SEED, "--target", NOWHERE)
    assert "0 of 8 scenarios would run" in out
    assert "needs target capability 'virtual_clock'" in out


def test_plan_with_a_real_time_budget_runs_the_seed_suite_for_real(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--clock real --max-wall 15m`: the suite's 12+ minutes of waits fit, with the estimate;
    a budget too small skips the scenarios that would exceed it, saying how much is needed."""
    out = plan(capsys, SEED, "--target", NOWHERE, "--clock", "real", "--max-wall", "15m")
    assert "12 min 15 s" in out  # the windows scenario: 15 s + 2 min + 10 min
    small = plan(capsys, SEED, "--target", NOWHERE, "--clock", "real", "--max-wall", "1m")
    assert "beyond the run's real-time budget (--max-wall 1 min" in small


def test_auto_falling_back_to_real_time_needs_a_budget(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--clock auto` against a target without clock control: scenarios that wait are skipped
    with their estimate unless --max-wall allows it."""
    out = plan(capsys, SEED, "--target", NOWHERE, "--clock", "auto")
    assert "the target has no clock control, so it would wait 12 min 15 s" in out


def test_a_herd_needs_consent_against_an_external_target(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """200 connections at once against someone else's server need --allow-load."""
    herd = str(ROOT / "scenarios" / "chaos" / "06_herd_after_outage.yaml")
    out = plan(capsys, herd, "--target", NOWHERE)
    assert "needs consent" in out
    assert "allow it with --allow-load 201" in out
    allowed = plan(capsys, herd, "--target", NOWHERE, "--allow-load", "300")
    assert "needs consent" not in allowed


def test_selection_by_tag_and_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    """--tag keeps scenarios with that tag; --name keeps names matching a shell pattern."""
    assert exit_codes.OK == cli.main(["list", SEED, CHAOS, "--tag", "windows"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert ["brief, medium and extended disconnections"] == [
        ln.split("\t")[1] for ln in lines if "seed" in ln
    ]
    assert exit_codes.OK == cli.main(["list", SEED, CHAOS, "--name", "*token*"])
    names = [ln.split("\t")[1] for ln in capsys.readouterr().out.strip().splitlines()]
    assert ["same token, different IP", "a replayed resume token revokes the session"] == names


def test_a_credential_is_named_never_given(capsys: pytest.CaptureFixture[str]) -> None:
    """--credential takes USER=env:NAME or USER=cmd:COMMAND; a bare token is a usage error,
    and an unset variable is named before anything runs."""
    code = cli.main(["plan", SEED, "--target", NOWHERE, "--credential", "alice=eyJhbGciOi"])
    assert exit_codes.USAGE_ERROR == code
    assert "write USER=env:VARIABLE or USER=cmd:COMMAND" in capsys.readouterr().err
    code = cli.main(["plan", SEED, "--target", NOWHERE, "--credential", "alice=env:NO_SUCH_VAR_X"])
    assert exit_codes.USAGE_ERROR == code
    assert "environment variable NO_SUCH_VAR_X" in capsys.readouterr().err
