"""Planning before a scenario starts: the clock it gets and every capability it lacks."""

from __future__ import annotations

import textwrap

from harness.driver.reference import INFO
from harness.plan import Missing, plan
from harness.scenario import load_text
from harness.targets.embedded import EmbeddedTarget

EMBEDDED = EmbeddedTarget.capabilities_for(virtual_clock=True)
REFERENCE = INFO.capabilities


def test_a_virtual_scenario_on_the_embedded_target_runs_on_the_virtual_clock() -> None:
    """The embedded target has every capability the reference driver's scenarios need."""
    s = load_text("name: t\nclock: virtual\nsteps:\n  - connect:\n  - wait: 10m\n")
    decided = plan(s, driver=REFERENCE, target=EMBEDDED)
    assert ("virtual", [], True) == (decided.clock, decided.missing, decided.runnable)


def test_auto_falls_back_to_the_real_clock_without_clock_control() -> None:
    """``clock: auto`` uses real time on a target that cannot move its clock."""
    s = load_text("name: t\nsteps:\n  - connect:\n  - wait: 1s\n")
    assert "real" == plan(s, driver=REFERENCE, target=frozenset()).clock
    assert "virtual" == plan(s, driver=REFERENCE, target=EMBEDDED).clock


def test_every_step_that_needs_a_missing_capability_is_named() -> None:
    """A scenario is skipped with each step path and the capability it lacks, before it starts."""
    s = load_text(
        textwrap.dedent(
            """\
            name: t
            clock: virtual
            steps:
              - connect:
              - drop: server_restart
              - repeat:
                  times: 2
                  steps:
                    - resume: {token: previous, expect: rejected}
              - expect:
                  metrics: [{name: m, value: "< 1"}]
            """
        )
    )
    driver = REFERENCE - {"resume_previous_token"}
    decided = plan(s, driver=driver, target=frozenset())
    assert [
        Missing("scenario", "virtual_clock", "target"),
        Missing("2", "restart", "target"),
        Missing("3.1", "resume_previous_token", "driver"),
        Missing("4", "metrics", "target"),
    ] == decided.missing
    assert (None, False) == (decided.clock, decided.runnable)
    assert decided.reason.startswith(
        "scenario needs target capability 'virtual_clock' (the harness can move the target's clock"
    )


def test_the_clock_option_overrides_the_scenario() -> None:
    """``--clock real`` runs a virtual scenario in real time, so clock control is not needed."""
    s = load_text("name: t\nclock: virtual\nsteps:\n  - connect:\n")
    decided = plan(s, driver=REFERENCE, target=frozenset(), clock="real")
    assert ("real", True) == (decided.clock, decided.runnable)


def test_planted_faults_need_the_embedded_target() -> None:
    """A scenario with a planted fault or server options runs only on the embedded server."""
    s = load_text("name: t\nplant_fault: skip_replay\nsteps:\n  - connect:\n")
    assert [Missing("scenario", "embedded", "target")] == plan(
        s, driver=REFERENCE, target=frozenset({"virtual_clock"})
    ).missing


def test_requires_lists_capabilities_of_either_side() -> None:
    """``requires`` may name a driver capability or a target one."""
    s = load_text("name: t\nrequires: [history, restart]\nsteps:\n  - connect:\n")
    decided = plan(s, driver=frozenset(), target=frozenset())
    assert [
        Missing("scenario", "history", "driver"),
        Missing("scenario", "restart", "target"),
    ] == decided.missing


def test_a_race_needs_resume_take_over_chat_and_with_nodes_a_cluster() -> None:
    """`race` resumes another client's session, chats after, and with `nodes` needs a cluster
    target: a driver without take-over or a single server skips it."""
    s = load_text(
        textwrap.dedent(
            """\
            name: t
            clients: [{name: h}, {name: a, user: h}, {name: b, user: h}]
            steps:
              - connect: {client: h}
              - race: {session_of: h, clients: [a, b], nodes: [1, 2]}
            """
        )
    )
    decided = plan(s, driver=REFERENCE - {"take_over"}, target=EMBEDDED)
    assert [Missing("2", "take_over", "driver"), Missing("2", "nodes", "target")] == sorted(
        decided.missing, key=lambda m: m.capability != "take_over"
    )
    assert plan(s, driver=REFERENCE, target=EMBEDDED | {"nodes"}).runnable
