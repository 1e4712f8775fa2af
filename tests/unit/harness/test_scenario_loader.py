"""The scenario loader: YAML to typed model, and every mistake at its file, line, column, field."""

from __future__ import annotations

import pkgutil
import textwrap
from pathlib import Path

import pytest

import harness.scenario as scenario_package
from harness.scenario import (
    ChangeIp,
    Chat,
    ClientSpec,
    Connect,
    ConstraintError,
    ContextExpect,
    DeliveryExpect,
    Drop,
    Duration,
    Expect,
    Fault,
    Heal,
    HistoryExpect,
    LatencyExpect,
    MetricExpect,
    Parallel,
    Problem,
    ReconnectFresh,
    Repeat,
    Resume,
    ResumeExpect,
    Scenario,
    ScenarioError,
    Send,
    Snapshot,
    Threshold,
    Wait,
    load,
    load_many,
    load_text,
)
from harness.scenario.loader import MsgspecError, parse_msgspec_error


def problems(text: str, filename: str = "s.yaml") -> list[Problem]:
    """The problems the loader reports for ``text`` (which must be invalid)."""
    with pytest.raises(ScenarioError) as caught:
        load_text(textwrap.dedent(text), filename)
    return list(caught.value.problems)


def steps_of(text: str) -> tuple[object, ...]:
    """The typed steps of a one-client scenario whose steps are ``text`` (a YAML list)."""
    body = textwrap.indent(textwrap.dedent(text), "  ")
    return load_text(f"name: t\nsteps:\n{body}").steps


# --------------------------------------------------------------------------------------------
# Valid files
# --------------------------------------------------------------------------------------------

FULL = """\
name: full
description: Everything at once.
tags: [seed, drop]
clock: virtual
timeout: 2m
requires: [restart]
clients:
  - name: alice
  - {name: bob, user: robert, route: direct}
steps:
  - connect: {client: alice}
  - chat: {client: alice, messages: 3, text: hi, timeout: 10s}
  - send: {client: bob, frame: "{bad", binary: true, expect_error: malformed_json,
           expect_close: 4000, timeout: 1s}
  - snapshot: {client: alice, name: before}
  - fault: {toxic: latency, latency: 200ms, jitter: 50ms, stream: upstream, toxicity: 0.5,
            duration: 30s, name: slow}
  - drop: {client: alice, how: half_open, duration: 15s}
  - change_ip: {client: bob, source: 127.0.0.2}
  - change_ip: {client: alice, forwarded_for: "2001:db8::1"}
  - resume: {client: alice, expect: degraded, warnings: [replay_window_passed], timeout: 3s}
  - resume: {client: bob, expect: rejected, reason: session_expired}
  - reconnect_fresh: {client: bob}
  - heal:
  - wait: 1.5s
  - repeat:
      times: 2
      steps:
        - drop: {how: server_restart}
  - parallel:
      clients: 10
      user_prefix: load
      steps:
        - connect:
  - expect:
      client: alice
      history: {count: 6, order: false, contains: [hi]}
      context: {preserved: ">= 95%", against: before, keys: [memory]}
      resume: {outcome: degraded, warnings: [replay_window_passed], notice: false}
      latency:
        - {operation: resume, p95: "< 1s", max: "<= 2s"}
      metrics:
        - {name: ws_connections, value: "<= 2"}
        - {name: rss, growth: "< 5%", between: [before, before]}
      delivery: {no_duplicates: false}
"""


def test_valid_scenario_loads_into_the_typed_model() -> None:
    """Every field of a valid file lands in the typed model, durations and thresholds converted."""
    expected = Scenario(
        name="full",
        description="Everything at once.",
        tags=("seed", "drop"),
        clock="virtual",
        timeout=Duration(120.0),
        requires=("restart",),
        clients=(
            ClientSpec(name="alice"),
            ClientSpec(name="bob", user="robert", route="direct"),
        ),
        steps=(
            Connect(client="alice"),
            Chat(client="alice", messages=3, text="hi", timeout=Duration(10.0)),
            Send(
                client="bob",
                frame="{bad",
                binary=True,
                expect_error="malformed_json",
                expect_close=4000,
                timeout=Duration(1.0),
            ),
            Snapshot(client="alice", name="before"),
            Fault(
                toxic="latency",
                latency=Duration(0.2),
                jitter=Duration(0.05),
                stream="upstream",
                toxicity=0.5,
                duration=Duration(30.0),
                name="slow",
            ),
            Drop(client="alice", how="half_open", duration=Duration(15.0)),
            ChangeIp(client="bob", source="127.0.0.2"),
            ChangeIp(client="alice", forwarded_for="2001:db8::1"),
            Resume(
                client="alice",
                expect="degraded",
                warnings=("replay_window_passed",),
                timeout=Duration(3.0),
            ),
            Resume(client="bob", expect="rejected", reason="session_expired"),
            ReconnectFresh(client="bob"),
            Heal(),
            Wait(duration=Duration(1.5)),
            Repeat(times=2, steps=(Drop(how="server_restart"),)),
            Parallel(clients=10, user_prefix="load", steps=(Connect(),)),
            Expect(
                client="alice",
                history=HistoryExpect(count=6, order=False, contains=("hi",)),
                context=ContextExpect(
                    preserved=Threshold(">=", 95.0, "%"), against="before", keys=("memory",)
                ),
                resume=ResumeExpect(
                    outcome="degraded", warnings=("replay_window_passed",), notice=False
                ),
                latency=(
                    LatencyExpect(
                        operation="resume",
                        p95=Threshold("<", 1.0, "s"),
                        max=Threshold("<=", 2.0, "s"),
                    ),
                ),
                metrics=(
                    MetricExpect(name="ws_connections", value=Threshold("<=", 2.0)),
                    MetricExpect(
                        name="rss", growth=Threshold("<", 5.0, "%"), between=("before", "before")
                    ),
                ),
                delivery=DeliveryExpect(no_duplicates=False),
            ),
        ),
    )
    assert expected == load_text(FULL, "full.yaml")


def test_defaults_give_one_client_named_client() -> None:
    """Without ``clients`` there is one proxied client named (and logged in as) ``client``."""
    scenario = load_text("name: t\nsteps:\n  - connect:\n")
    assert (ClientSpec(name="client", user="client", route="proxy"),) == scenario.clients
    assert ("", (), "auto", 60.0, ()) == (
        scenario.description,
        scenario.tags,
        scenario.clock,
        scenario.timeout,
        scenario.requires,
    )
    assert isinstance(scenario.timeout, Duration)


@pytest.mark.parametrize(
    ("written", "step"),
    [
        ("- wait: 15s", Wait(duration=Duration(15.0))),
        ("- wait: 15", Wait(duration=Duration(15.0))),
        ("- drop: reset", Drop(how="reset")),
        ("- resume: full", Resume(expect="full")),
        ("- resume: degraded", Resume(expect="degraded")),
        ("- chat: 5", Chat(messages=5)),
        ("- snapshot: before", Snapshot(name="before")),
        ("- connect:", Connect()),
        ("- connect: ~", Connect()),
        ("- connect: {}", Connect()),
        ("- heal:", Heal()),
        ("- reconnect_fresh:", ReconnectFresh()),
        ("- resume:", Resume()),
    ],
)
def test_shorthand_means_the_same_as_the_mapping(written: str, step: object) -> None:
    """A scalar fills the kind's shorthand field; no value means every default."""
    assert (step,) == steps_of(written)


def test_nested_steps_of_repeat_and_parallel_use_the_same_syntax() -> None:
    """Steps inside ``repeat`` and ``parallel`` take the one-key form and shorthands too."""
    steps = steps_of(
        """\
        - repeat:
            times: 3
            steps:
              - drop: reset
              - repeat: {times: 2, steps: [wait: 1s]}
        - parallel: {clients: 2, steps: [connect: , chat: 2]}
        """
    )
    assert (
        Repeat(
            times=3,
            steps=(Drop(how="reset"), Repeat(times=2, steps=(Wait(duration=Duration(1.0)),))),
        ),
        Parallel(clients=2, steps=(Connect(), Chat(messages=2))),
    ) == steps


def test_yaml_anchors_and_merge_keys_work() -> None:
    """An aliased mapping is merged, and keys written in the mapping itself win."""
    steps = steps_of(
        """\
        - fault: &slow {toxic: latency, latency: 100ms, name: slow}
        - fault: {<<: *slow, latency: 300ms}
        """
    )
    assert (
        Fault(toxic="latency", latency=Duration(0.1), name="slow"),
        Fault(toxic="latency", latency=Duration(0.3), name="slow"),
    ) == steps


def test_recursive_alias_is_a_problem_not_a_crash() -> None:
    """A step that contains itself through an alias is reported at that step, not recursed into."""
    assert [
        Problem(
            "s.yaml",
            3,
            35,
            "steps[0].steps[0].steps[0]",
            "a YAML alias refers to a node that contains it",
        ),
    ] == problems("name: t\nsteps:\n  - repeat: &r {times: 1, steps: [repeat: *r]}\n")


def test_an_unknown_requirement_names_the_known_capabilities() -> None:
    """``requires`` lists only capabilities the harness knows, with a suggestion for a typo."""
    (problem,) = problems("name: t\nrequires: [restrat]\nsteps:\n  - connect:\n")
    assert (2, 12, "requires[0]", "restart") == (
        problem.line,
        problem.column,
        problem.field,
        problem.suggestion,
    )
    assert problem.message.startswith("no capability `restrat` (capabilities: chat,")


def test_an_unknown_planted_fault_names_the_embedded_servers_faults() -> None:
    """``plant_fault`` must name a fault the embedded reference server can plant."""
    (problem,) = problems("name: t\nplant_fault: skip_replays\nsteps:\n  - connect:\n")
    assert (2, 1, "plant_fault", "skip_replay") == (
        problem.line,
        problem.column,
        problem.field,
        problem.suggestion,
    )
    assert problem.message.startswith("the embedded reference server has no planted fault")


def test_models_built_in_python_check_their_rules_too() -> None:
    """Constructing a struct directly runs the same per-struct rules as loading."""
    with pytest.raises(ConstraintError) as caught:
        Fault(toxic="latency")
    assert ("the `latency` toxic needs `latency`", None) == (
        str(caught.value),
        caught.value.field,
    )


# --------------------------------------------------------------------------------------------
# Problems: one test per kind of mistake
# --------------------------------------------------------------------------------------------


def test_unknown_step_kind_points_at_the_kind_and_suggests_the_nearest() -> None:
    """A typo in a step kind is reported at the kind's key with the nearest valid kind."""
    assert [
        Problem("s.yaml", 4, 5, "steps[1]", "unknown step kind `dorp`", "drop"),
    ] == problems(
        """\
        name: t
        steps:
          - connect:
          - dorp: reset
        """
    )


def test_every_unknown_step_kind_is_reported() -> None:
    """The loader checks every step's kind itself, so several typos are reported at once."""
    assert [
        Problem("s.yaml", 3, 5, "steps[0]", "unknown step kind `conect`", "connect"),
        Problem("s.yaml", 4, 5, "steps[1]", "unknown step kind `teleport`", None),
    ] == problems("name: t\nsteps:\n  - conect:\n  - teleport: now\n")


def test_typo_in_a_field_points_at_the_key_and_suggests_the_field() -> None:
    """An unknown field is reported at its key, with the nearest field of that step."""
    assert [
        Problem("s.yaml", 5, 7, "steps[1].hw", "unknown field `hw`", "how"),
    ] == problems(
        """\
        name: t
        steps:
          - connect:
          - drop:
              hw: reset
        """
    )


def test_typo_in_a_top_level_key_suggests_the_scenario_field() -> None:
    """An unknown key of the scenario itself gets the nearest scenario field."""
    assert [
        Problem("s.yaml", 2, 1, "stpes", "unknown field `stpes`", "steps"),
    ] == problems("name: t\nstpes: []\n")


def test_typo_in_a_nested_mapping_suggests_from_that_mapping() -> None:
    """An unknown key inside ``expect.history`` is matched against the history fields."""
    assert [
        Problem("s.yaml", 3, 24, "steps[0].history.cuont", "unknown field `cuont`", "count"),
    ] == problems("name: t\nsteps:\n  - expect: {history: {cuont: 3}}\n")


def test_missing_required_field_points_at_the_step() -> None:
    """A missing field is reported at the step's kind, with the field's path."""
    assert [
        Problem("s.yaml", 4, 5, "steps[1].duration", "missing required field `duration`"),
    ] == problems("name: t\nsteps:\n  - connect:\n  - wait:\n")


def test_missing_scenario_name_points_at_the_start_of_the_file() -> None:
    """A missing top-level field is reported where the scenario mapping starts."""
    assert [
        Problem("s.yaml", 2, 1, "name", "missing required field `name`"),
    ] == problems("# no name\nsteps:\n  - connect:\n")


def test_wrong_type_points_at_the_key() -> None:
    """A value of the wrong type is reported at its key, in msgspec's words."""
    assert [
        Problem("s.yaml", 3, 12, "steps[0].messages", "expected `int`, got `str`"),
    ] == problems("name: t\nsteps:\n  - chat: {messages: five}\n")


def test_out_of_range_value_gives_the_bound() -> None:
    """A number out of its range is reported with the bound it breaks."""
    assert [
        Problem("s.yaml", 3, 14, "steps[0].times", "expected `int` >= 1"),
    ] == problems("name: t\nsteps:\n  - repeat: {times: 0, steps: [heal: ]}\n")


def test_invalid_choice_lists_the_choices_and_suggests_one() -> None:
    """A value outside a fixed set lists the set and suggests its nearest member."""
    assert [
        Problem(
            "s.yaml",
            3,
            12,
            "steps[0].how",
            "invalid value 'rest'; expected one of: close, half_open, proxy_down, reset,"
            " server_restart",
            "reset",
        ),
    ] == problems("name: t\nsteps:\n  - drop: {how: rest}\n")


def test_error_in_a_shorthand_points_at_the_value() -> None:
    """With a shorthand there is no key, so the problem points at the scalar."""
    assert [
        Problem(
            "s.yaml",
            3,
            13,
            "steps[0].expect",
            "invalid value 'ful'; expected one of: any, degraded, full, rejected, unreachable",
            "full",
        ),
    ] == problems("name: t\nsteps:\n  - resume: ful\n")


def test_error_inside_nested_steps_has_the_nested_path() -> None:
    """A mistake in a step of a ``repeat`` names the nested path and its own line."""
    text = "name: t\nsteps:\n  - repeat:\n      times: 2\n      steps:\n"
    text += "        - drop: reset\n        - wait:\n"
    assert [
        Problem("s.yaml", 7, 11, "steps[0].steps[1].duration", "missing required field `duration`"),
    ] == problems(text)


def test_bad_duration_explains_the_format() -> None:
    """A duration without a known unit is reported at its key with the accepted forms."""
    assert [
        Problem(
            "s.yaml",
            3,
            12,
            "steps[0].duration",
            "invalid duration '15 sec': write a number of seconds or a number with a unit"
            " (ms, s, m, h), like '15s'",
        ),
    ] == problems("name: t\nsteps:\n  - wait: {duration: 15 sec}\n")


def test_bad_threshold_explains_the_format() -> None:
    """A threshold without an operator is reported at its key with the accepted forms."""
    assert [
        Problem(
            "s.yaml",
            3,
            42,
            "steps[0].latency[0].p95",
            "invalid threshold '1s': write a comparison (<, <=, >, >=, ==) and a number, with an"
            " optional unit (ms, s, m, h, %), like '< 1s', '>= 0.95' or '< 5%'",
        ),
    ] == problems("name: t\nsteps:\n  - expect: {latency: [{operation: chat, p95: 1s}]}\n")


def test_latency_bound_must_be_a_time() -> None:
    """A latency bound without a time unit is refused, naming the statistic."""
    assert [
        Problem(
            "s.yaml",
            3,
            42,
            "steps[0].latency[0].p50",
            "a latency bound is a time, like '< 500ms'; got '< 0.5'",
        ),
    ] == problems('name: t\nsteps:\n  - expect: {latency: [{operation: chat, p50: "< 0.5"}]}\n')


def test_attribute_of_another_toxic_is_named() -> None:
    """A toxic given an attribute it does not take is reported at that attribute."""
    assert [
        Problem(
            "s.yaml",
            3,
            45,
            "steps[0].jitter",
            "the `bandwidth` toxic has no attribute `jitter` (it takes `rate_kbps`)",
        ),
    ] == problems("name: t\nsteps:\n  - fault: {toxic: bandwidth, rate_kbps: 8, jitter: 1s}\n")


def test_missing_toxic_attribute_points_at_the_step() -> None:
    """A toxic without the attribute it needs is reported at the step, naming the attribute."""
    assert [
        Problem("s.yaml", 3, 5, "steps[0]", "the `slow_close` toxic needs `delay`"),
    ] == problems("name: t\nsteps:\n  - fault: {toxic: slow_close}\n")


CLIENTS = """\
name: t
clients:
  - name: alice
  - name: bob
steps:
"""


def test_unknown_client_suggests_a_declared_one() -> None:
    """A ``client`` that names no declared client is reported at the key with the nearest name."""
    assert [
        Problem(
            "s.yaml",
            6,
            15,
            "steps[0].client",
            "unknown client `alcie` (declared: alice, bob)",
            "alice",
        ),
    ] == problems(CLIENTS + "  - connect: {client: alcie}\n")


def test_omitted_client_is_ambiguous_with_several_clients() -> None:
    """With two clients, a step about one client must say which, at any depth."""
    assert [
        Problem(
            "s.yaml",
            6,
            5,
            "steps[0].client",
            "this step needs `client`: the scenario declares 2 clients (alice, bob)",
        ),
        Problem(
            "s.yaml",
            7,
            32,
            "steps[1].steps[0].client",
            "this step needs `client`: the scenario declares 2 clients (alice, bob)",
        ),
    ] == problems(CLIENTS + "  - connect:\n  - repeat: {times: 2, steps: [chat: 1]}\n")


def test_steps_about_the_run_need_no_client() -> None:
    """Outages of every connection and run-wide expectations are fine without ``client``."""
    scenario = load_text(
        CLIENTS
        + "  - drop: proxy_down\n  - drop: half_open\n  - drop: server_restart\n"
        + '  - expect: {latency: [{operation: chat, p95: "< 1s"}]}\n'
    )
    assert 4 == len(scenario.steps)


def test_client_inside_parallel_is_refused() -> None:
    """Steps inside ``parallel`` act on its own clients, so naming one is a mistake."""
    assert [
        Problem(
            "s.yaml",
            3,
            46,
            "steps[0].steps[0].client",
            "inside `parallel` the steps act on each of its own clients; remove `client`",
        ),
    ] == problems(
        "name: t\nsteps:\n  - parallel: {clients: 2, steps: [connect: {client: client}]}\n"
    )


def test_nested_parallel_is_refused() -> None:
    """A ``parallel`` inside a ``parallel`` is reported at the inner one."""
    assert [
        Problem("s.yaml", 3, 36, "steps[0].steps[0]", "`parallel` steps cannot be nested"),
    ] == problems(
        "name: t\nsteps:\n"
        "  - parallel: {clients: 2, steps: [parallel: {clients: 2, steps: [heal: ]}]}\n"
    )


def test_duplicate_client_name_is_refused() -> None:
    """Two clients with one name are reported at the second name."""
    assert [
        Problem(
            "s.yaml", 4, 5, "clients[1].name", "client `a` is declared twice (first as clients[0])"
        ),
    ] == problems("name: t\nclients:\n  - name: a\n  - name: a\nsteps:\n  - connect: {client: a}\n")


def test_change_ip_with_both_addresses_is_refused() -> None:
    """``change_ip`` takes ``source`` or ``forwarded_for``, and the second one is flagged."""
    assert [
        Problem(
            "s.yaml",
            3,
            36,
            "steps[0].forwarded_for",
            "give `source` or `forwarded_for`, not both",
        ),
    ] == problems("name: t\nsteps:\n  - change_ip: {source: 127.0.0.2, forwarded_for: 10.0.0.1}\n")


def test_change_ip_with_no_address_is_refused() -> None:
    """``change_ip`` without an address is reported at the step."""
    assert [
        Problem(
            "s.yaml",
            3,
            5,
            "steps[0]",
            "give `source` (a 127.x.y.z address) or `forwarded_for`",
        ),
    ] == problems("name: t\nsteps:\n  - change_ip: {}\n")


def test_change_ip_source_must_be_loopback() -> None:
    """A ``source`` outside 127.0.0.0/8 is refused: the harness only connects over loopback."""
    assert [
        Problem(
            "s.yaml",
            3,
            17,
            "steps[0].source",
            "`source` '10.1.2.3' is not a loopback address (127.0.0.0/8); the harness only ever"
            " connects over loopback",
        ),
    ] == problems("name: t\nsteps:\n  - change_ip: {source: 10.1.2.3}\n")


def test_change_ip_forwarded_for_must_be_an_address() -> None:
    """``forwarded_for`` must parse as an IPv4 or IPv6 address."""
    assert [
        Problem(
            "s.yaml",
            3,
            17,
            "steps[0].forwarded_for",
            "`forwarded_for` 'elsewhere' is not an IP address",
        ),
    ] == problems("name: t\nsteps:\n  - change_ip: {forwarded_for: elsewhere}\n")


def test_change_ip_source_on_the_proxy_route_is_refused() -> None:
    """Through Toxiproxy the target sees the proxy's address, so ``source`` needs ``direct``."""
    assert [
        Problem(
            "s.yaml",
            3,
            17,
            "steps[0].source",
            "`source` only works on the direct route, and client `client` goes through the"
            " proxy, where the target sees the proxy's address: use `forwarded_for`, or give"
            " the client `route: direct`",
        ),
    ] == problems("name: t\nsteps:\n  - change_ip: {source: 127.0.0.9}\n")


def test_proxy_drop_on_the_direct_route_is_refused() -> None:
    """``half_open`` acts on the proxy, so a direct client would not notice it."""
    assert [
        Problem(
            "s.yaml",
            5,
            11,
            "steps[0].how",
            "`how: half_open` acts on the proxy, and client `d` is on the direct route, so it"
            " would not notice (give it `route: proxy`)",
        ),
    ] == problems("name: t\nclients:\n  - {name: d, route: direct}\nsteps:\n  - drop: half_open\n")


def test_client_side_drops_work_on_the_direct_route() -> None:
    """``close`` and ``reset`` are done by the client's own socket, on either route."""
    scenario = load_text(
        "name: t\nclients:\n  - {name: d, route: direct}\nsteps:\n  - drop: reset\n"
    )
    assert (Drop(how="reset"),) == scenario.steps


def test_reason_needs_expect_rejected() -> None:
    """``reason`` with any outcome but ``rejected`` is reported at ``reason``."""
    assert [
        Problem(
            "s.yaml",
            3,
            28,
            "steps[0].reason",
            "`reason` only goes with `expect: rejected` (this step expects full)",
        ),
    ] == problems("name: t\nsteps:\n  - resume: {expect: full, reason: session_expired}\n")


def test_unknown_snapshot_name_suggests_a_taken_one() -> None:
    """A comparison with a snapshot not taken before is reported with the nearest name."""
    assert [
        Problem(
            "s.yaml",
            5,
            24,
            "steps[2].context.equals",
            "no snapshot named `befor` is taken before this step (taken so far: before)",
            "before",
        ),
    ] == problems(
        "name: t\nsteps:\n  - connect:\n  - snapshot: before\n"
        "  - expect: {context: {equals: befor}}\n"
    )


def test_duplicate_key_points_at_the_second() -> None:
    """A key written twice in one mapping is reported at the second, naming the first's line."""
    assert [
        Problem("s.yaml", 3, 1, "name", "duplicate key `name` (first on line 1)"),
    ] == problems("name: a\nsteps: [heal: ]\nname: b\n")


def test_yaml_syntax_error_has_line_and_column() -> None:
    """A YAML syntax error is reported where pyyaml found it, with no field."""
    assert [
        Problem(
            "s.yaml",
            3,
            13,
            "",
            "YAML syntax error: mapping values are not allowed here",
        ),
    ] == problems("name: t\nsteps:\n  - wait: 1s: 2s\n")


def test_unquoted_greater_than_threshold_gets_a_hint() -> None:
    """A threshold starting with ``>`` must be quoted in YAML, and the error says so."""
    assert [
        Problem(
            "s.yaml",
            3,
            35,
            "",
            "YAML syntax error: found character '>' that cannot start any token;"
            ' a threshold that starts with `>` must be quoted, like ">= 0.95"',
        ),
    ] == problems("name: t\nsteps:\n  - expect: {context: {preserved: >= 0.9, against: x}}\n")


def test_empty_steps_is_refused() -> None:
    """A scenario needs at least one step."""
    assert [
        Problem("s.yaml", 2, 1, "steps", "needs at least one item"),
    ] == problems("name: t\nsteps: []\n")


def test_step_with_two_keys_is_refused() -> None:
    """Two kinds in one list item (a missing ``-``) is reported at the second."""
    assert [
        Problem(
            "s.yaml",
            4,
            5,
            "steps[0]",
            "a step has one key, its kind, and this one also has `wait`: start another step"
            " with `- `, or indent the fields under `drop:`",
        ),
    ] == problems("name: t\nsteps:\n  - drop: reset\n    wait: 1s\n")


def test_bare_step_kind_suggests_the_mapping_form() -> None:
    """A step written as ``- heal`` (no colon) gets ``heal:`` as the suggestion."""
    assert [
        Problem(
            "s.yaml",
            3,
            5,
            "steps[0]",
            "a step is a mapping with one key, its kind, like `- wait: 5s`",
            "heal:",
        ),
    ] == problems("name: t\nsteps:\n  - heal\n")


def test_scalar_for_a_kind_without_shorthand_is_refused() -> None:
    """Only a few kinds take a scalar; the others say to write a mapping."""
    assert [
        Problem(
            "s.yaml",
            3,
            12,
            "steps[0]",
            "`fault` has no shorthand: write its fields as a mapping under `fault:`",
        ),
    ] == problems("name: t\nsteps:\n  - fault: latency\n")


def test_tag_field_cannot_be_written_in_a_step() -> None:
    """``step`` is the loader's own key, so writing it is an unknown field."""
    assert [
        Problem("s.yaml", 3, 12, "steps[0].step", "unknown field `step`", None),
    ] == problems("name: t\nsteps:\n  - heal: {step: wait}\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "",
            Problem(
                "s.yaml",
                1,
                1,
                "",
                "the file is empty: a scenario needs at least `name` and `steps`",
            ),
        ),
        (
            "- connect:\n",
            Problem("s.yaml", 1, 1, "", "a scenario is a mapping with at least `name` and `steps`"),
        ),
        (
            "name: a\nsteps: [heal: ]\n---\nname: b\nsteps: [heal: ]\n",
            Problem(
                "s.yaml",
                4,
                1,
                "",
                "a file holds one scenario, and this is a second YAML document (after `---`);"
                " put it in a file of its own",
            ),
        ),
        (
            "name: t\n1: x\nsteps: [heal: ]\n",
            Problem("s.yaml", 2, 1, "", "a mapping key must be a name, not int '1'"),
        ),
        (
            "name: !!python/name:os.system t\nsteps: [heal: ]\n",
            Problem(
                "s.yaml",
                1,
                7,
                "name",
                "could not determine a constructor for the tag"
                " 'tag:yaml.org,2002:python/name:os.system'",
            ),
        ),
    ],
)
def test_file_level_mistakes_are_reported(text: str, expected: Problem) -> None:
    """An empty file, a non-mapping, a second document, a non-name key, an unsafe tag."""
    assert [expected] == problems(text)


# --------------------------------------------------------------------------------------------
# Rendering and several files
# --------------------------------------------------------------------------------------------


def test_problem_renders_as_file_line_column_field_message_suggestion() -> None:
    """``str()`` gives the one-line form documented in docs/scenarios.md."""
    assert "a.yaml:4:9: steps[2].hw: unknown field `hw` (did you mean 'how'?)" == str(
        Problem("a.yaml", 4, 9, "steps[2].hw", "unknown field `hw`", "how")
    )
    assert "a.yaml:1:2: YAML syntax error: x" == str(
        Problem("a.yaml", 1, 2, "", "YAML syntax error: x")
    )
    assert "a.yaml: cannot read the file: gone" == str(
        Problem("a.yaml", 0, 0, "", "cannot read the file: gone")
    )


def test_load_many_reports_the_problems_of_every_file(tmp_path: Path) -> None:
    """Every file is read before raising, so all their problems are in one error."""
    (tmp_path / "suite" / "deep").mkdir(parents=True)
    (tmp_path / "suite" / "b.yaml").write_text("name: b\nsteps:\n  - dorp: reset\n")
    (tmp_path / "suite" / "deep" / "c.yml").write_text("name: c\nsteps:\n  - wait: 5x\n")
    (tmp_path / "suite" / "a.yaml").write_text("name: a\nsteps: [heal: ]\n")
    (tmp_path / "suite" / "notes.txt").write_text("not a scenario")
    (tmp_path / "dup.yaml").write_text("# same name\nname: a\nsteps: [heal: ]\n")
    with pytest.raises(ScenarioError) as caught:
        load_many([tmp_path / "suite", tmp_path / "dup.yaml", tmp_path / "missing.yaml"])
    suite = tmp_path / "suite"
    assert [
        Problem(str(suite / "b.yaml"), 3, 5, "steps[0]", "unknown step kind `dorp`", "drop"),
        Problem(
            str(suite / "deep" / "c.yml"),
            3,
            11,
            "steps[0].duration",
            "invalid duration '5x': write a number of seconds or a number with a unit"
            " (ms, s, m, h), like '15s'",
        ),
        Problem(
            str(tmp_path / "dup.yaml"),
            2,
            1,
            "name",
            f"scenario name `a` is also used by {suite / 'a.yaml'}",
        ),
        Problem(
            str(tmp_path / "missing.yaml"),
            0,
            0,
            "",
            "cannot read the file: No such file or directory",
        ),
    ] == list(caught.value.problems)


def test_load_many_expands_directories_in_sorted_order(tmp_path: Path) -> None:
    """A directory gives its ``*.yaml`` and ``*.yml`` files, recursively, sorted by path."""
    (tmp_path / "z").mkdir()
    for name in ("b.yaml", "a.yml", "z/c.yaml"):
        (tmp_path / name).write_text(f"name: {name}\nsteps: [heal: ]\n")
    assert ["a.yml", "b.yaml", "z/c.yaml"] == [s.name for s in load_many([tmp_path])]


def test_load_many_reports_an_empty_directory(tmp_path: Path) -> None:
    """A directory without scenario files is a problem, not an empty suite."""
    with pytest.raises(ScenarioError) as caught:
        load_many([tmp_path])
    assert [Problem(str(tmp_path), 0, 0, "", "no *.yaml or *.yml file here")] == list(
        caught.value.problems
    )


def test_load_reads_a_file_and_names_it(tmp_path: Path) -> None:
    """``load`` names the file it was given in its problems."""
    path = tmp_path / "one.yaml"
    path.write_text("name: t\nsteps:\n  - chat: {mesages: 2}\n")
    with pytest.raises(ScenarioError) as caught:
        load(path)
    assert (
        f"{path}:3:12: steps[0].mesages: unknown field `mesages` (did you mean 'messages'?)"
        == str(caught.value)
    )


# --------------------------------------------------------------------------------------------
# msgspec's error text (docs/dependencies.md: one test per message form)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        (
            "Expected `object`, got `array`",
            MsgspecError("Expected `object`, got `array`", (), None),
        ),
        (
            "Expected `int`, got `str` - at `$.windows.full_replay_s`",
            MsgspecError("Expected `int`, got `str`", ("windows", "full_replay_s"), None),
        ),
        (
            "Object missing required field `how` - at `$.steps[0].steps[2]`",
            MsgspecError(
                "Object missing required field `how`", ("steps", 0, "steps", 2, "how"), "missing"
            ),
        ),
        (
            "Object contains unknown field `hw`",
            MsgspecError("Object contains unknown field `hw`", ("hw",), "unknown"),
        ),
        (
            "Expected `str`, got `int` - at `$.tags[12]`",
            MsgspecError("Expected `str`, got `int`", ("tags", 12), None),
        ),
        (
            "Expected `int`, got `str` - at `$.a[...].b`",
            MsgspecError("Expected `int`, got `str`", ("a",), None),
        ),
    ],
)
def test_parse_msgspec_error_reads_the_path(text: str, parsed: MsgspecError) -> None:
    """Root, nested, missing field, unknown field, list index; a dict key ends the path."""
    assert parsed == parse_msgspec_error(text)


def test_package_all_is_complete() -> None:
    """Every public name of ``harness.scenario`` is in ``__all__``, and every entry exists."""
    submodules = {m.name for m in pkgutil.iter_modules(scenario_package.__path__)}
    public = {n for n in vars(scenario_package) if not n.startswith("_")} - submodules
    assert sorted(public) == sorted(scenario_package.__all__)
    assert all(hasattr(scenario_package, name) for name in scenario_package.__all__)


def test_a_latency_bound_against_another_operation_is_a_ratio() -> None:
    """With `against`, bounds are unitless ratios; a time there, or the same operation, is an
    error naming the field."""
    ok = load_text(
        "name: t\nsteps:\n  - expect:\n      latency:\n"
        "        - {operation: resume, against: connect, p50: '< 3'}\n"
    )
    assert "connect" == ok.steps[0].latency[0].against  # type: ignore[union-attr]
    (timed,) = problems(
        "name: t\nsteps:\n  - expect:\n      latency:\n"
        "        - {operation: resume, against: connect, p50: '< 3s'}\n"
    )
    assert "with `against`, a bound is a ratio" in timed.message
    (same,) = problems(
        "name: t\nsteps:\n  - expect:\n      latency:\n"
        "        - {operation: resume, against: resume, p50: '< 3'}\n"
    )
    assert "`against` must name another operation" in same.message


def test_cluster_steps_and_their_shorthands_load() -> None:
    """`nodes`, `node` on connect and resume, `kill_node`, `start_node` and `store_link` load
    into the typed model, shorthands included."""
    from harness.scenario.model import KillNode, StartNode, StoreLink

    scenario = load_text(
        textwrap.dedent(
            """
            name: t
            nodes: 2
            steps:
              - connect: {node: 1}
              - kill_node: 1
              - resume: {node: 2}
              - start_node: {node: 1}
              - store_link: cut
              - store_link: {how: slow, latency: 200ms, duration: 2s}
            """
        )
    )
    assert 2 == scenario.nodes
    assert (
        Connect(node=1),
        KillNode(node=1),
        Resume(node=2),
        StartNode(node=1),
        StoreLink(how="cut"),
        StoreLink(how="slow", latency=Duration(0.2), duration=Duration(2.0)),
    ) == scenario.steps


def test_store_link_rules_are_checked() -> None:
    """`slow` needs a latency, and only `slow` takes one; `nodes` is at most 8."""
    assert ["steps[0].latency"] == [
        p.field for p in problems("name: t\nsteps:\n  - store_link: slow\n")
    ]
    assert ["steps[0].latency"] == [
        p.field for p in problems("name: t\nsteps:\n  - store_link: {how: cut, latency: 1s}\n")
    ]
    assert ["nodes"] == [p.field for p in problems("name: t\nnodes: 9\nsteps:\n  - heal:\n")]


RACE = """\
name: t
nodes: 2
clients:
  - name: holder
  - {name: one, user: holder}
  - {name: two, user: holder}
steps:
  - race:
      session_of: holder
      clients: [one, two]
"""


def test_race_loads_with_its_defaults_and_its_fields() -> None:
    """`race` names whose session and who races for it; nodes, lost reason, messages and
    timeout default to client i on node i, overloaded, 1 and 5 s."""
    from harness.scenario.model import Race

    (race,) = load_text(RACE).steps
    assert Race(session_of="holder", clients=("one", "two")) == race
    assert (None, "overloaded", 1, Duration(5.0)) == (
        race.nodes,
        race.lost,
        race.messages,
        race.timeout,
    )
    (given,) = load_text(
        RACE.replace("clients: [one, two]", "clients: [one, two]\n      nodes: [2, 1]\n").replace(
            "name: t\n", "name: t2\n"
        )
        + "      lost: conflict\n      messages: 0\n      timeout: 2s\n"
    ).steps
    assert (
        Race(
            session_of="holder",
            clients=("one", "two"),
            nodes=(2, 1),
            lost="conflict",
            messages=0,
            timeout=Duration(2.0),
        )
        == given
    )


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        ("clients: [one, one]", (10, 7, "steps[0].clients"), "each client races once"),
        ("clients: [one, holder]", (9, 7, "steps[0].session_of"), "`holder` holds the session"),
        ("clients: [one, two]\n      nodes: [1]", (11, 7, "steps[0].nodes"), "`nodes` names one"),
        ("clients: [one, tow]", (10, 22, "steps[0].clients[1]"), "unknown client `tow`"),
        ("clients: [one]", (10, 7, "steps[0].clients"), "length >= 2"),
    ],
)
def test_race_errors_name_file_line_and_field(
    change: str, where: tuple[int, int, str], message: str
) -> None:
    """Each rule of `race` is reported at the line and column of the field it is about."""
    (problem,) = problems(RACE.replace("clients: [one, two]", change))
    assert where == (problem.line, problem.column, problem.field)
    assert message in problem.message, problem.message


def test_race_in_parallel_is_refused() -> None:
    """A race names the scenario's own clients, which `parallel` does not have."""
    (problem,) = problems(
        RACE.replace(
            "  - race:\n", "  - parallel:\n      clients: 2\n      steps:\n        - race:\n"
        )
        .replace("      session_of", "            session_of")
        .replace("      clients: [one", "            clients: [one")
    )
    assert "steps[0].steps[0]" == problem.field
    assert "cannot be in `parallel`" in problem.message
