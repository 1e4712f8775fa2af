"""Checkers on hand-made records: each passes what is right and names what is wrong."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest

from harness import checkers
from harness.checkers import ClientView
from harness.driver.base import PositionModel
from harness.history import (
    Connect,
    Delivered,
    History,
    Outcome,
    Position,
    Resume,
    Terms,
    Turn,
    Violation,
)
from harness.scenario import parse_threshold

DENSE = PositionModel(order="dense", continues_across_sessions=False)


def view(
    *positions: Position,
    after: int | None = 0,
    missed: Sequence[tuple[int, int]] = (),
    violations: Sequence[str] = (),
    stream: str = "s1",
) -> ClientView:
    """Client ``c``'s view of a history: a new session on ``stream`` (continuing after
    ``after``), a resume declaring each ``missed`` range, and deliveries at ``positions``."""
    history = History()
    op = history.invoke("c", Connect())
    history.complete(op, "ok", Outcome(kind="new", session="S", stream=stream, after=after))
    for first, last in missed:
        op = history.invoke("c", Resume())
        outcome = Outcome(
            kind="full", session="S", stream=stream, after=after, missed=(first, last)
        )
        history.complete(op, "ok", outcome)
    for p in positions:
        history.event("c", Delivered(stream=stream, position=p, kind="reply", reply_to="m"))
    for message in violations:
        history.event("c", Violation(message=message))
    return checkers.client_view(history.ops, "c")


def turns_for(sent: Sequence[tuple[str, str]]) -> list[Turn]:
    """The history a correct server stores for ``sent``: each message, then its reply."""
    out: list[Turn] = []
    for message_id, text in sent:
        out.append(Turn(index=len(out), role="user", message_id=message_id, text=text))
        out.append(
            Turn(index=len(out), role="assistant", message_id=message_id, text=f"answer to {text}")
        )
    return out


SENT = [("m1", "first"), ("m2", "second"), ("m3", "third")]


# --- delivery --------------------------------------------------------------------------------


def test_delivery_passes_every_position_once_in_order() -> None:
    """Positions 1..5 each delivered once, in order, pass with a count in the message."""
    verdict = checkers.delivery(view(1, 2, 3, 4, 5), DENSE)
    assert (True, "5 messages, each once, in order") == (verdict.passed, verdict.message)
    assert "delivery" == verdict.check


def test_delivery_fails_on_a_repeated_position() -> None:
    """A position that arrived twice fails as a duplicate, naming the first doubled one."""
    verdict = checkers.delivery(view(1, 2, 3, 3, 4, 4), DENSE)
    assert False is verdict.passed
    assert "position 3 was delivered twice (2 duplicated in all)" == verdict.message
    assert {"stream": "s1", "duplicated": [3, 4]} == verdict.evidence


def test_delivery_ignores_duplicates_when_not_asked() -> None:
    """With ``no_duplicates`` off, a repeated position in order is not a failure."""
    verdict = checkers.delivery(view(1, 2, 2, 3), DENSE, no_duplicates=False)
    assert True is verdict.passed


def test_delivery_reports_reordering_as_reordering() -> None:
    """Two positions swapped fail as a reordering at the first one involved, not as a duplicate."""
    verdict = checkers.delivery(view(1, 2, 4, 3, 5), DENSE)
    assert False is verdict.passed
    assert "position 3 arrived after 4 (reordered)" == verdict.message
    assert {"stream": "s1", "around": [1, 2, 4, 3, 5]} == verdict.evidence


def test_delivery_ignores_order_when_not_asked() -> None:
    """With ``order`` off, a reordered but complete stream passes."""
    verdict = checkers.delivery(view(2, 1, 3), DENSE, order=False)
    assert True is verdict.passed


def parts(*deliveries: tuple[int, str, bool]) -> ClientView:
    """Client ``c``'s view of reply parts: (position, what it replies to, final)."""
    history = History()
    op = history.invoke("c", Connect())
    history.complete(op, "ok", Outcome(kind="new", session="S", stream="s1", after=0))
    for position, reply_to, final in deliveries:
        history.event(
            "c",
            Delivered(stream="s1", position=position, kind="reply", reply_to=reply_to, final=final),
        )
    return checkers.client_view(history.ops, "c")


def test_delivery_passes_replies_that_end_with_their_final_part() -> None:
    """Two replies, interleaved, each ending with its final part, pass."""
    verdict = checkers.delivery(
        parts((1, "m1", False), (2, "m2", False), (3, "m1", True), (4, "m2", True)), DENSE
    )
    assert True is verdict.passed


def test_delivery_fails_on_a_part_after_the_final_one() -> None:
    """A reply whose final flag came one part early fails, naming the reply and both parts."""
    verdict = checkers.delivery(parts((1, "m1", False), (2, "m1", True), (3, "m1", True)), DENSE)
    assert False is verdict.passed
    assert (
        "the reply to m1 went on after its final part: position 3 arrived after the final one, 2"
        == verdict.message
    )
    assert {"stream": "s1", "reply_to": "m1", "final": 2, "after": 3} == verdict.evidence


def test_delivery_does_not_count_a_replayed_part_after_the_final_one() -> None:
    """A part delivered again after the final one (a duplicate) is the duplicate check's
    business, not a reply that went on."""
    verdict = checkers.delivery(
        parts((1, "m1", False), (2, "m1", True), (1, "m1", False)), DENSE, no_duplicates=False
    )
    assert True is verdict.passed


def test_delivery_ignores_a_reply_going_on_when_order_is_not_asked() -> None:
    """With ``order`` off, a part after the final one is not judged."""
    verdict = checkers.delivery(parts((1, "m1", True), (2, "m1", False)), DENSE, order=False)
    assert True is verdict.passed


def test_delivery_fails_on_a_lost_position() -> None:
    """A position below the highest seen that never arrived fails, named as lost."""
    verdict = checkers.delivery(view(1, 2, 4, 5), DENSE)
    assert False is verdict.passed
    expected = "position 3 never arrived and the server did not declare it lost"
    assert expected == verdict.message
    assert {"stream": "s1", "lost": [3], "lost_count": 1} == verdict.evidence


def test_delivery_fails_on_a_loss_at_the_start_of_the_stream() -> None:
    """The stream starts after the outcome's ``after``: a first position further on is a loss."""
    verdict = checkers.delivery(view(3, 4), DENSE)
    assert (False, [1, 2]) == (verdict.passed, verdict.evidence["lost"])


def test_delivery_starts_where_a_taken_over_session_continued() -> None:
    """A client that took a session over after position 5 owes nothing before 6."""
    assert True is checkers.delivery(view(6, 7, after=5), DENSE).passed


def test_delivery_ignores_loss_when_not_asked() -> None:
    """With ``no_loss`` off, a hole in the stream is not a failure."""
    verdict = checkers.delivery(view(1, 3), DENSE, no_loss=False)
    assert True is verdict.passed


def test_delivery_accepts_ranges_the_server_declared_missed() -> None:
    """Positions inside a range the server declared lost on resume are not losses."""
    verdict = checkers.delivery(view(1, 2, 5, 6, 9, missed=[(3, 4), (7, 8)]), DENSE)
    assert True is verdict.passed
    assert "5 messages, each once, in order, 4 declared lost by the server" == verdict.message


def test_delivery_declared_range_does_not_cover_other_losses() -> None:
    """A declared range excuses only its own positions: another hole still fails."""
    verdict = checkers.delivery(view(1, 2, 5, 7, missed=[(3, 4)]), DENSE)
    assert False is verdict.passed
    assert [6] == verdict.evidence["lost"]


def test_delivery_fails_on_a_protocol_violation() -> None:
    """A protocol violation the driver saw fails the check even when positions look right."""
    errors = ["sequence_gap: expected 3, got 5"]
    verdict = checkers.delivery(view(1, 2, violations=errors), DENSE)
    assert False is verdict.passed
    assert "the server broke the protocol: sequence_gap: expected 3, got 5" == verdict.message
    assert {"violations": errors} == verdict.evidence


def test_delivery_of_nothing_passes() -> None:
    """A client that was sent nothing has nothing lost, doubled or reordered."""
    verdict = checkers.delivery(view(), DENSE)
    assert (True, "0 messages, each once, in order") == (verdict.passed, verdict.message)


def test_delivery_with_increasing_positions_allows_holes() -> None:
    """A driver whose positions only increase (they may skip) is not judged for holes."""
    increasing = PositionModel(order="increasing", continues_across_sessions=True)
    assert True is checkers.delivery(view(10, 12, 20), increasing).passed
    assert False is checkers.delivery(view(10, 20, 12), increasing).passed


def test_delivery_with_opaque_positions_judges_only_duplicates() -> None:
    """Opaque positions have no order: a repeated one fails, any arrival order passes."""
    opaque = PositionModel(order="opaque", continues_across_sessions=False)
    assert True is checkers.delivery(view("b", "a", "c", after=None), opaque).passed
    verdict = checkers.delivery(view("b", "a", "b", after=None), opaque)
    assert (False, ["b"]) == (verdict.passed, verdict.evidence["duplicated"])


def test_delivery_judges_each_stream_on_its_own() -> None:
    """Positions of two streams (two sessions) do not make each other duplicates or losses."""
    history = History()
    for stream in ("s1", "s2"):
        op = history.invoke("c", Connect())
        history.complete(op, "ok", Outcome(kind="new", session=stream, stream=stream, after=0))
        for p in (1, 2, 3):
            history.event("c", Delivered(stream=stream, position=p, kind="reply"))
    verdict = checkers.delivery(checkers.client_view(history.ops, "c"), DENSE)
    assert (True, "6 messages, each once, in order") == (verdict.passed, verdict.message)


def test_delivery_fails_on_a_stream_the_client_was_never_given() -> None:
    """Messages of another's session, on a connection the target then refused, are a leak."""
    history = History()
    op = history.invoke("c", Resume())
    history.event("c", Delivered(stream="theirs", position="x1", kind="reply"))
    history.complete(op, "ok", Outcome(kind="rejected", reason="auth_failed"))
    opaque = PositionModel(order="opaque", continues_across_sessions=True)
    verdict = checkers.delivery(checkers.client_view(history.ops, "c"), opaque)
    assert (False, "theirs") == (verdict.passed, verdict.evidence["stream"])


def test_delivery_accepts_replayed_messages_that_arrive_before_the_resume_completes() -> None:
    """A recovery's missed messages may come before its answer: the stream is still given."""
    history = History()
    op = history.invoke("c", Resume())
    history.event("c", Delivered(stream="mine", position="x1", kind="reply"))
    history.complete(op, "ok", Outcome(kind="full", session="mine", stream="mine"))
    opaque = PositionModel(order="opaque", continues_across_sessions=True)
    assert True is checkers.delivery(checkers.client_view(history.ops, "c"), opaque).passed


def _replied(*parts: tuple[str, bool]) -> ClientView:
    history = History()
    op = history.invoke("c", Connect())
    history.complete(op, "ok", Outcome(kind="new", session="S", stream="S"))
    for n, (reply_to, final) in enumerate(parts):
        delivered = Delivered(stream="S", position=f"o{n}", kind="reply", reply_to=reply_to)
        history.event("c", msgspec.structs.replace(delivered, final=final))
    return checkers.client_view(history.ops, "c")


def test_replies_pass_when_every_sent_message_has_its_final_part() -> None:
    """Each message sent in the session has a complete reply at the client."""
    view_ = _replied(("m1", False), ("m1", True), ("m2", True))
    verdict = checkers.replies(view_, [("m1", "a"), ("m2", "b")])
    assert (True, "all 2 messages sent in the session have their complete reply") == (
        verdict.passed,
        verdict.message,
    )


def test_replies_name_the_first_message_without_a_complete_reply() -> None:
    """A reply whose final part never came is a loss, whatever the positions say."""
    verdict = checkers.replies(_replied(("m1", True), ("m2", False)), [("m1", "a"), ("m2", "b")])
    assert (False, "m2", 1) == (
        verdict.passed,
        verdict.evidence["message_id"],
        verdict.evidence["parts"],
    )


# --- history ---------------------------------------------------------------------------------


def test_history_passes_a_complete_conversation() -> None:
    """Every sent message stored once, in order, with its text and reply, passes."""
    verdict = checkers.history(turns_for(SENT), SENT, count=6, contains=["second"])
    assert True is verdict.passed
    assert "6 turns stored; all 3 sent messages once, in order" == verdict.message


def test_history_fails_on_a_wrong_count() -> None:
    """A stored history of another length than expected fails with the count seen."""
    verdict = checkers.history(turns_for(SENT), SENT, count=8)
    assert False is verdict.passed
    assert "the server holds 6 turns, expected 8" == verdict.message
    assert {"turns": 6} == verdict.evidence


def test_history_fails_on_a_missing_sent_message() -> None:
    """A message the client sent that the server did not store fails, naming its id and text."""
    verdict = checkers.history(turns_for(SENT[:2]), SENT)
    assert False is verdict.passed
    assert "sent message m3 ('third') is not in the server's history" == verdict.message
    assert {"missing": "m3"} == verdict.evidence


def test_history_fails_on_changed_text() -> None:
    """A message stored with other text than was sent fails, quoting both."""
    stored = turns_for([("m1", "first"), ("m2", "SECOND"), ("m3", "third")])
    verdict = checkers.history(stored, SENT)
    assert False is verdict.passed
    assert "message m2 is stored as 'SECOND', sent as 'second'" == verdict.message


def test_history_fails_on_a_duplicated_message() -> None:
    """The same message id stored twice fails, with how many times."""
    stored = [*turns_for(SENT), Turn(index=6, role="user", message_id="m2", text="second")]
    verdict = checkers.history(stored, SENT)
    assert False is verdict.passed
    assert "message m2 is stored 2 times" == verdict.message


def test_history_allows_duplicates_when_not_asked() -> None:
    """With ``no_duplicates`` and ``order`` off, a doubled message is not a failure."""
    stored = [*turns_for(SENT), Turn(index=6, role="user", message_id="m2", text="second")]
    verdict = checkers.history(stored, SENT, no_duplicates=False, order=False)
    assert True is verdict.passed


def test_history_fails_on_turns_out_of_order() -> None:
    """Stored turns whose indexes are not increasing fail."""
    stored = list(reversed(turns_for(SENT)))
    verdict = checkers.history(stored, SENT)
    assert (False, "stored turns are out of order") == (verdict.passed, verdict.message)


def test_history_fails_on_messages_stored_in_another_order() -> None:
    """Sent messages stored in another order than sent fail, even with increasing indexes."""
    stored = turns_for([SENT[1], SENT[0], SENT[2]])
    verdict = checkers.history(stored, SENT)
    assert False is verdict.passed
    assert "sent messages are stored in another order" == verdict.message


def test_history_fails_when_a_text_is_not_contained() -> None:
    """A ``contains`` text that no stored turn has fails, quoting it."""
    verdict = checkers.history(turns_for(SENT), SENT, contains=["fourth"])
    assert (False, "no stored turn contains 'fourth'") == (verdict.passed, verdict.message)


def test_history_ignores_loss_when_not_asked() -> None:
    """With ``no_loss`` off, an unstored message is not a failure."""
    verdict = checkers.history(turns_for(SENT[:1]), SENT, no_loss=False)
    assert True is verdict.passed


# --- context ---------------------------------------------------------------------------------


def agent_context(**memory: str) -> dict[str, Any]:
    """A context shaped like the reference agent's, with ``memory`` as given."""
    return {
        "memory": dict(memory),
        "preferences": {"style": "short"},
        "variables": {"budget": 1200},
        "workflow": {"name": "onboarding", "step": 2, "completed": ["greet", "ask"]},
        "tool_calls": [{"name": "calculator", "arguments": "1200 * 2", "result": "2400"}],
    }


def test_flatten_names_leaves_by_dotted_path_and_index() -> None:
    """Nested mappings become dotted paths, lists keep indexes, empty containers stay leaves."""
    flat = checkers.flatten({"a": {"b": 1, "c": [2, {"d": 3}]}, "e": {}, "f": []})
    assert {"a.b": 1, "a.c[0]": 2, "a.c[1].d": 3, "e": {}, "f": []} == flat


def test_context_equal_passes() -> None:
    """The same context before and after passes, counting its values."""
    verdict = checkers.context(agent_context(name="Ada"), agent_context(name="Ada"))
    assert (True, "all 10 context values equal") == (verdict.passed, verdict.message)
    assert {"kept": 10, "of": 10, "ratio": 1.0, "differ": []} == verdict.evidence


def test_context_changed_leaf_fails_and_is_named() -> None:
    """A value that changed fails the equality check, with its path in message and evidence."""
    verdict = checkers.context(agent_context(name="Ada"), agent_context(name="Bob"))
    assert False is verdict.passed
    assert "1 context values changed, first memory.name" == verdict.message
    assert ["memory.name"] == verdict.evidence["differ"]


def test_context_removed_leaf_fails() -> None:
    """A value that disappeared counts as changed."""
    after = agent_context()
    after["tool_calls"] = []
    verdict = checkers.context(agent_context(), after)
    assert False is verdict.passed
    differ = ["tool_calls[0].arguments", "tool_calls[0].name", "tool_calls[0].result"]
    assert differ == verdict.evidence["differ"]


def test_context_added_keys_are_not_losses() -> None:
    """Values added since the snapshot do not make an equality check fail."""
    after = agent_context(name="Ada", city="Lyon")
    after["variables"]["total"] = 2400
    after["new_section"] = {"x": 1}
    verdict = checkers.context(agent_context(name="Ada"), after)
    assert True is verdict.passed


def test_context_values_added_to_an_empty_mapping_are_not_losses() -> None:
    """A mapping that was empty at the snapshot and has gained entries has lost nothing."""
    after = agent_context(name="Ada")
    verdict = checkers.context(agent_context(), after)
    assert (True, "all 10 context values equal") == (verdict.passed, verdict.message)


def test_context_emptied_mapping_is_a_loss() -> None:
    """A mapping that had entries and is now empty has lost them."""
    verdict = checkers.context(agent_context(name="Ada"), agent_context())
    assert False is verdict.passed
    assert ["memory.name"] == verdict.evidence["differ"]


@pytest.mark.parametrize(
    ("threshold", "changed", "passed", "message"),
    [
        (">= 0.95", 1, True, "95.0% of 20 context values kept (need >= 0.95)"),
        (">= 0.95", 2, False, "90.0% of 20 context values kept (need >= 0.95)"),
        (">= 95%", 1, True, "95.0% of 20 context values kept (need >= 95%)"),
        ("> 0.95", 1, False, "95.0% of 20 context values kept (need > 0.95)"),
        ("== 100%", 0, True, "100.0% of 20 context values kept (need == 100%)"),
    ],
)
def test_context_preserved_ratio_meets_its_threshold(
    threshold: str, changed: int, passed: bool, message: str
) -> None:
    """The share of the snapshot's values still equal is compared with the threshold."""
    before = {"memory": {f"k{i}": f"v{i}" for i in range(20)}}
    after = {"memory": {f"k{i}": ("other" if i < changed else f"v{i}") for i in range(20)}}
    verdict = checkers.context(before, after, preserved=parse_threshold(threshold))
    assert (passed, message) == (verdict.passed, verdict.message)
    assert round((20 - changed) / 20, 4) == verdict.evidence["ratio"]


def test_context_keys_filter_ignores_other_keys() -> None:
    """With ``keys``, a change outside those top-level keys does not count."""
    after = agent_context(name="Bob")
    after["preferences"]["style"] = "long"
    verdict = checkers.context(agent_context(name="Ada"), after, keys=["variables", "workflow"])
    assert True is verdict.passed
    assert 5 == verdict.evidence["of"]


def test_context_keys_filter_still_catches_its_keys() -> None:
    """With ``keys``, a change inside one of those keys fails and is named."""
    after = agent_context(name="Bob")
    verdict = checkers.context(agent_context(name="Ada"), after, keys=["memory"])
    assert (False, ["memory.name"]) == (verdict.passed, verdict.evidence["differ"])


def test_context_keys_filter_compares_list_valued_keys() -> None:
    """A top-level key holding a list (the tool-call history) is compared when named in ``keys``."""
    after = agent_context(name="Ada")
    after["tool_calls"] = []
    verdict = checkers.context(agent_context(name="Ada"), after, keys=["memory", "tool_calls"])
    assert False is verdict.passed
    assert "tool_calls[0].arguments" == verdict.evidence["differ"][0]


def test_context_keys_filter_does_not_match_a_longer_key() -> None:
    """``keys: [memory]`` compares ``memory`` only, not a key that merely starts with it."""
    before = {"memory": {"a": 1}, "memory_old": {"b": 1}}
    after = {"memory": {"a": 1}, "memory_old": {"b": 2}}
    verdict = checkers.context(before, after, keys=["memory"])
    assert (True, 1) == (verdict.passed, verdict.evidence["of"])


def test_context_keys_filter_fails_on_a_key_the_snapshot_lacks() -> None:
    """A key in ``keys`` that the snapshot does not have fails instead of comparing nothing."""
    verdict = checkers.context(agent_context(), agent_context(), keys=["memroy"])
    assert False is verdict.passed
    assert "the snapshot's context has no key 'memroy' to compare" == verdict.message


# --- outcome_consistent ----------------------------------------------------------------------

TERMS = Terms(full_window_s=30.0, resumable_window_s=300.0)


@pytest.mark.parametrize(
    ("kind", "gap", "warnings", "passed"),
    [
        ("full", 5.0, (), True),
        ("full", 30.0, (), True),
        ("degraded", 5.0, ("epoch_changed",), True),
        ("degraded", 5.0, (), False),
        ("degraded", 120.0, ("replay_window_passed",), True),
        ("full", 120.0, (), False),
        ("degraded", 300.0, ("replay_window_passed",), True),
        ("degraded", 600.0, ("replay_window_passed",), False),
        ("full", 600.0, (), False),
    ],
)
def test_outcome_consistent_with_the_windows(
    kind: str, gap: float, warnings: tuple[str, ...], passed: bool
) -> None:
    """Full within the full window, degraded within the resumable one, nothing beyond it."""
    outcome = Outcome(kind=kind, gap_s=gap, warnings=warnings, terms=TERMS)  # type: ignore[arg-type]
    verdict = checkers.outcome_consistent(outcome)
    assert (passed, {"gap_s": gap, "outcome": kind}) == (verdict.passed, verdict.evidence)


def test_outcome_consistent_names_what_the_windows_say() -> None:
    """The failure message gives the gap, the outcome, both windows and the expected outcome."""
    verdict = checkers.outcome_consistent(Outcome(kind="full", gap_s=600.0, terms=TERMS))
    assert "gap 600.0 s gave full; windows 30 s / 300 s say expired" == verdict.message


@pytest.mark.parametrize(
    ("outcome", "terms"),
    [
        (Outcome(kind="rejected", reason="session_expired"), TERMS),
        (Outcome(kind="full", gap_s=999.0), None),
        (Outcome(kind="full"), TERMS),
        (Outcome(kind="full", gap_s=999.0), Terms()),
    ],
)
def test_outcome_consistent_passes_when_there_is_nothing_to_compare(
    outcome: Outcome, terms: Terms | None
) -> None:
    """A rejection, unknown windows or an unknown gap cannot contradict anything."""
    with_terms = Outcome(kind=outcome.kind, reason=outcome.reason, gap_s=outcome.gap_s, terms=terms)
    assert True is checkers.outcome_consistent(with_terms).passed


# --- latency ---------------------------------------------------------------------------------


def test_percentile_is_nearest_rank() -> None:
    """Percentiles pick the nearest-rank value of the sorted durations."""
    values = [float(v) for v in range(20, 0, -1)]
    assert (10.0, 19.0, 20.0, 1.0) == (
        checkers.percentile(values, 50),
        checkers.percentile(values, 95),
        checkers.percentile(values, 99),
        checkers.percentile(values, 0),
    )


def test_latency_passes_within_every_bound() -> None:
    """Durations whose statistics meet every stated bound pass, with the statistics as evidence."""
    durations = [0.1] * 18 + [0.4, 0.9]
    limits = {"p50": parse_threshold("< 200ms"), "max": parse_threshold("<= 0.9s")}
    verdict = checkers.latency("chat", durations, limits)
    assert True is verdict.passed
    assert "chat over 20 runs: p50 < 200ms, max <= 900ms" == verdict.message
    evidence = {"p50": 0.1, "p95": 0.4, "p99": 0.9, "max": 0.9, "mean": 0.155, "n": 20}
    assert evidence == verdict.evidence


def test_latency_fails_on_the_first_bound_missed() -> None:
    """A statistic over its bound fails, with its value in milliseconds and the bound."""
    durations = [0.1] * 18 + [0.4, 0.9]
    limits = {"p50": parse_threshold("< 1s"), "p95": parse_threshold("< 300ms")}
    verdict = checkers.latency("resume", durations, limits)
    assert False is verdict.passed
    assert "resume p95 was 400.0 ms, needed < 300ms" == verdict.message


def test_latency_lower_bound_fails_when_too_fast() -> None:
    """A lower bound (``p50 > 0.2s``) fails when the operation was faster."""
    verdict = checkers.latency("chat", [0.05, 0.06], {"p50": parse_threshold("> 0.2s")})
    assert (False, "chat p50 was 50.0 ms, needed > 200ms") == (verdict.passed, verdict.message)


def test_latency_of_no_durations_fails() -> None:
    """No completed operation to measure is a failure, not a vacuous pass."""
    verdict = checkers.latency("history", [], {"max": parse_threshold("< 1s")})
    assert (False, "no completed history operation was measured") == (
        verdict.passed,
        verdict.message,
    )


# --- metrics ---------------------------------------------------------------------------------

PROMETHEUS = """\
# HELP ws_connections Open WebSocket connections
# TYPE ws_connections gauge
ws_connections 3.0
# HELP ws_connections_opened_total WebSocket connections accepted
# TYPE ws_connections_opened_total counter
ws_connections_opened_total 17.0
# HELP ws_resumes_total Resume attempts, by outcome
# TYPE ws_resumes_total counter
ws_resumes_total{outcome="full"} 4.0
ws_resumes_total{outcome="degraded"} 1.0
process_resident_memory_bytes 5.24288e+07
"""


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ws_connections", 3.0),
        ("ws_connections_opened_total", 17.0),
        ("process_resident_memory_bytes", 52428800.0),
        ("ws_connections_opened", None),
        ("ws_missing", None),
    ],
)
def test_metric_samples_read_a_sample(name: str, value: float | None) -> None:
    """A sample is found by its exact name, not by a name it merely starts with."""
    assert value == checkers.metric_samples(PROMETHEUS).get(name)


def test_metric_samples_skip_a_malformed_sample() -> None:
    """A sample whose value is not a number is left out rather than given a made-up value."""
    assert {} == checkers.metric_samples("ws_connections many\n")


def test_history_without_no_loss_says_how_many_sent_messages_it_holds() -> None:
    """With `no_loss: false` the verdict counts the sent messages stored instead of claiming
    all of them."""
    sent = [("m1", "a"), ("m2", "b"), ("m3", "c")]
    turns = [Turn(index=3, role="user", message_id="m3", text="c")]
    verdict = checkers.history(turns, sent, no_loss=False)
    assert (True, "1 turns stored; 1 of 3 sent messages once, in order") == (
        verdict.passed,
        verdict.message,
    )


def test_metric_samples_skip_a_sample_that_is_not_finite() -> None:
    """A NaN quantile (no observation yet) is left out, so results.json stays valid JSON
    numbers, and a later finite sample of that name is the one read."""
    text = 'latency{quantile="0.5"} NaN\nlatency{quantile="0.99"} 0.25\nup +Inf\n'
    assert {"latency": 0.25} == checkers.metric_samples(text)


def test_metric_value_against_its_threshold() -> None:
    """A metric's value passes or fails its threshold; a missing metric or no metrics fail."""
    samples = checkers.metric_samples(PROMETHEUS)
    assert True is checkers.metric_value(samples, "ws_connections", parse_threshold("< 5")).passed
    assert False is checkers.metric_value(samples, "ws_connections", parse_threshold("< 2")).passed
    missing = checkers.metric_value(samples, "ws_missing", parse_threshold("< 2"))
    assert (False, "metric ws_missing not found") == (missing.passed, missing.message)
    none = checkers.metric_value(None, "ws_connections", parse_threshold("< 2"))
    assert (False, "the target answered no metrics") == (none.passed, none.message)


@pytest.mark.parametrize(
    ("first", "last", "threshold", "passed", "growth"),
    [
        (100.0, 104.0, "< 5%", True, 0.04),
        (100.0, 106.0, "< 5%", False, 0.06),
        (100.0, 104.0, "< 0.05", True, 0.04),
        (100.0, 90.0, "< 5%", True, -0.1),
        (0.0, 1.0, "< 5%", False, math.inf),
    ],
)
def test_metric_growth_against_its_threshold(
    first: float, last: float, threshold: str, passed: bool, growth: float
) -> None:
    """Relative growth from the first to the last value is compared with the threshold."""
    verdict = checkers.metric_growth(
        "rss", {"rss": first}, {"rss": last}, parse_threshold(threshold)
    )
    assert (passed, pytest.approx(growth)) == (verdict.passed, verdict.evidence["growth"])
    assert {"first": first, "last": last} == {k: verdict.evidence[k] for k in ("first", "last")}


def test_metric_growth_message_states_the_change() -> None:
    """The message gives the growth in percent, both values and the bound."""
    verdict = checkers.metric_growth("rss", {"rss": 100.0}, {"rss": 106.0}, parse_threshold("< 5%"))
    assert "rss grew 6.00% (100 to 106); needed < 5%" == verdict.message


# --- latency against another operation ------------------------------------------------------


def test_latency_ratio_passes_within_its_bound() -> None:
    """A resume median twice a connect's meets `< 3`, with both figures in the evidence."""
    verdict = checkers.latency_ratio(
        "resume", [0.002, 0.002, 0.004], "connect", [0.001, 0.001], {"p50": parse_threshold("< 3")}
    )
    assert True is verdict.passed
    assert "resume against connect over 3 runs: p50 2.00x (< 3)" == verdict.message
    assert (2.0, 0.002, 0.001) == tuple(
        verdict.evidence[k] for k in ("p50_ratio", "resume_p50", "connect_p50")
    )


def test_latency_ratio_catches_a_resume_far_slower_than_a_connect() -> None:
    """A resume 100x slower than a connect fails `< 3` however fast both are in absolute terms."""
    verdict = checkers.latency_ratio(
        "resume", [0.1], "connect", [0.001], {"p50": parse_threshold("< 3")}
    )
    assert False is verdict.passed
    expected = "resume p50 was 100.00x connect's (100.0 ms against 1.0 ms), needed < 3"
    assert expected == verdict.message


def test_latency_ratio_without_a_baseline_fails() -> None:
    """No measured baseline is a failure, not a pass."""
    verdict = checkers.latency_ratio(
        "resume", [0.1], "connect", [], {"p50": parse_threshold("< 3")}
    )
    assert (False, "no completed connect operation was measured") == (
        verdict.passed,
        verdict.message,
    )


# --- stored replies against received ones ------------------------------------------------------


def reply_view(*parts: tuple[int, str, bool]) -> ClientView:
    """Client ``c`` received these (position, text, final) parts of the reply to ``m1``."""
    history = History()
    op = history.invoke("c", Connect())
    history.complete(op, "ok", Outcome(kind="new", session="S", stream="s1", after=0))
    for position, text, final in parts:
        body = Delivered(
            stream="s1", position=position, kind="reply", reply_to="m1", text=text, final=final
        )
        history.event("c", body)
    return checkers.client_view(history.ops, "c")


STORED = [
    Turn(index=0, role="user", message_id="m1", text="hello"),
    Turn(index=1, role="agent", message_id="m1", text="one two three"),
]


def test_stored_reply_equal_to_the_received_one_passes() -> None:
    """Parts joined in position order (a replayed duplicate once) are what the server stored."""
    view = reply_view(
        (1, "one ", False), (2, "two ", False), (2, "two ", False), (3, "three", True)
    )
    verdict = checkers.replies_stored(STORED, view, [("m1", "hello")])
    assert (True, "1 stored replies are the ones received") == (verdict.passed, verdict.message)


def test_stored_reply_that_differs_from_the_received_one_fails() -> None:
    """A server that stores something else than it sent fails, with both texts as evidence."""
    view = reply_view((1, "one ", False), (2, "TWO ", False), (3, "three", True))
    verdict = checkers.replies_stored(STORED, view, [("m1", "hello")])
    assert False is verdict.passed
    assert ("one two three", "one TWO three") == (
        verdict.evidence["stored"],
        verdict.evidence["received"],
    )


def test_an_incomplete_reply_is_not_compared() -> None:
    """A reply whose final part never arrived says nothing about what was stored."""
    view = reply_view((1, "one ", False))
    assert True is checkers.replies_stored(STORED, view, [("m1", "hello")]).passed


# --- race (§7.5) ------------------------------------------------------------------------------


def race_history(*answers: tuple[str, Outcome | None, int | None]) -> list[checkers.RaceAnswer]:
    """Racers' resumes as the runner records them: all invoked, then each answered (None: the
    attempt failed) and, with a code, a close of the racer's connection observed after."""
    from harness.history import Closed, Failure

    history = History()
    invoked = {name: history.invoke(name, Resume(session_of="h")) for name, _, _ in answers}
    for name, answer, close in answers:
        if answer is None:
            history.complete(invoked[name], "fail", Failure(error="connection refused"))
        else:
            history.complete(invoked[name], "ok", answer)
        if close is not None:
            history.event(name, Closed(code=close, reason="why"))
    return checkers.race_answers(history.ops, [name for name, _, _ in answers])


ACCEPTED = Outcome(kind="full", session="S", stream="s1", after=4)
LOST = Outcome(kind="rejected", reason="overloaded", retry_after=0.25)


def test_race_passes_one_winner_and_a_loser_told_to_retry() -> None:
    """One accepted, the other rejected with the race's reason and a retry hint: raced."""
    verdict = checkers.race(race_history(("a", ACCEPTED, None), ("b", LOST, 1013)), "overloaded")
    assert (True, "raced", "a") == (
        verdict.passed,
        verdict.evidence["kind"],
        verdict.evidence["holder"],
    )


def test_race_passes_a_takeover_and_a_revocation() -> None:
    """Decided one after the other: the first accepted is closed (taken over), or the later
    one is refused and the session ends with no holder."""
    taken = checkers.race(race_history(("a", ACCEPTED, 4001), ("b", ACCEPTED, None)), "overloaded")
    assert (True, "taken over", "b") == (
        taken.passed,
        taken.evidence["kind"],
        taken.evidence["holder"],
    )
    reused = Outcome(kind="rejected", reason="token_reused")
    revoked = checkers.race(race_history(("a", ACCEPTED, 4005), ("b", reused, 4005)), "overloaded")
    assert (True, "refused", None) == (
        revoked.passed,
        revoked.evidence["kind"],
        revoked.evidence["holder"],
    )


def test_race_fails_two_holders() -> None:
    """Both accepted and neither closed: the session has two connections."""
    verdict = checkers.race(
        race_history(("a", ACCEPTED, None), ("b", ACCEPTED, None)), "overloaded"
    )
    assert (False, "at most one winner") == (verdict.passed, verdict.expected)
    assert verdict.message.startswith("2 clients hold the session")


def test_race_fails_a_lost_race_without_a_retry_hint() -> None:
    """§7.5: the loser is told when to retry."""
    bare = Outcome(kind="rejected", reason="overloaded")
    verdict = checkers.race(race_history(("a", ACCEPTED, None), ("b", bare, 1013)), "overloaded")
    assert (False, "a lost race without a retry hint") == (
        verdict.passed,
        verdict.message.split(":")[0],
    )


def test_race_fails_when_no_resume_is_accepted_or_one_gets_no_answer() -> None:
    """Both lost (to no one), or a resume went unanswered: not an order one server gives."""
    lost = checkers.race(race_history(("a", LOST, 1013), ("b", LOST, 1013)), "overloaded")
    assert (False, "no resume was accepted") == (lost.passed, lost.message.split(":")[0])
    silent = checkers.race(race_history(("a", ACCEPTED, None), ("b", None, None)), "overloaded")
    assert (False, "an answer to every resume") == (silent.passed, silent.expected)
    assert "b: no answer (connection refused)" in silent.message


def test_race_does_not_count_a_lost_connection_as_the_targets_close() -> None:
    """A connection that died without a close frame (1006) was not closed by the target: two
    accepted resumes, one of them merely cut, still hold the session twice."""
    verdict = checkers.race(
        race_history(("a", ACCEPTED, 1006), ("b", ACCEPTED, None)), "overloaded"
    )
    assert (False, "at most one winner") == (verdict.passed, verdict.expected)


def test_race_fails_when_every_resume_was_accepted_and_every_connection_closed() -> None:
    """Taken over in turn, the last one holds the session: both closed as taken over leaves
    it to no one, which no order of one server's decisions gives."""
    verdict = checkers.race(
        race_history(("a", ACCEPTED, 4001), ("b", ACCEPTED, 4001)), "overloaded"
    )
    assert (False, "the last resume to take the session over holding it") == (
        verdict.passed,
        verdict.expected,
    )
