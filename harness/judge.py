"""Judging a step: from the step's definition and the history up to its end, to verdicts.

The runner acts (calls drivers, the target, the fault layer) and records; this module alone
decides whether what was recorded is what the step expected. It reads nothing but the
history, so ``harness check`` gives the same verdicts on a saved run, and a history edited by
hand (a delivery removed or doubled) changes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness import checkers
from harness.checkers import ClientView, Verdict
from harness.driver.base import PositionModel
from harness.history import (
    OPERATION_KINDS,
    AwaitHerd,
    AwaitReply,
    ContextValue,
    Failure,
    FetchContext,
    FetchHistory,
    FetchMetrics,
    HistoryPage,
    InspectStore,
    MetricsValue,
    Op,
    Outcome,
    RawAnswer,
    Replied,
    SendMessage,
    SendRaw,
    Sent,
    SnapshotTaken,
    StoredRows,
    durations,
)
from harness.opindex import OpIndex
from harness.scenario import model as m


@dataclass(frozen=True)
class StepSlice:
    """A step and the history it is judged on."""

    ops: Sequence[Op]
    """The history from the scenario's start to the end of the step."""
    first: int
    """Where in ``ops`` the step began."""
    client: str | None
    positions: PositionModel
    index: OpIndex | None = None
    """An index of the history ``ops`` begins (``ops`` is its first ``len(ops)``); without
    one, every question scans ``ops``."""

    @property
    def own(self) -> Sequence[Op]:
        """The operations recorded while the step ran."""
        return self.ops[self.first :]

    def of(self, processes: Iterable[str | None], start: int = 0) -> list[Op]:
        """The operations of ``processes`` from position ``start`` to the step's end."""
        if self.index is None:
            wanted = set(processes)
            return [op for op in self.ops[start:] if op.process in wanted]
        return self.index.of(processes, start, len(self.ops))

    def mine(self) -> list[Op]:
        """The step's own operations of its client."""
        return self.of((self.client,), self.first)

    def view(self, client: str | None = None) -> ClientView:
        """What the history up to the step's end holds about ``client`` (default: the
        step's)."""
        name = client or self.client
        assert name is not None
        return checkers.client_view(self.of((name,)), name)

    def sent_in_session(self, session: str | None) -> list[tuple[str, str]]:
        """(message id, text) of every message sent in ``session`` up to the step's end."""
        if self.index is None:
            return checkers.sent_in_session(self.ops, session)
        return self.index.sent_in_session(session, len(self.ops))


def judge(step: m.Step, s: StepSlice) -> list[Verdict]:
    """The verdicts of one (leaf) step; an empty list when the step only acts and did so."""
    match step:
        case m.Connect() | m.ReconnectFresh():
            return [_connect(s)]
        case m.Chat():
            return _chat(step, s)
        case m.Send():
            return _send(step, s)
        case m.Resume():
            return _resume(step, s)
        case m.Race():
            return _race(step, s)
        case m.Expect():
            return _expect(step, s)
        case m.Once():
            return _herd(s)
        case _:
            return _acted(s)


def _herd(s: StepSlice) -> list[Verdict]:
    """A client's `once` step: its wait at the gate ended ``ok`` (the group's steps of it ran
    and held). Only the client's own record counts: the steps of `once` are judged as steps
    of their own, and their operations interleave differently in a merged history."""
    waits = [op for op in s.mine() if isinstance(op.body, AwaitHerd)]
    done = _completion(s, waits[-1]) if waits else None
    expected = "every client of the group at `once`, and its steps to hold"
    if done is None:
        return [_verdict("once", False, "the wait at `once` never ended", expected=expected)]
    if isinstance(done.body, Failure):
        return [_verdict("once", False, done.body.error, expected=expected)]
    return []


def _verdict(
    check: str, passed: bool, message: str, expected: str = "", **evidence: object
) -> Verdict:
    return Verdict(
        check=check, passed=passed, message=message, expected=expected, evidence=evidence
    )


_SHARED = frozenset({"fault", "clock", "target"})
"""Processes that are no client's: their operations belong to whichever step ran them."""


def _failures(s: StepSlice) -> list[Op]:
    """The step's failed operations: its client's, and the fault layer's, clock's, target's
    (in a `parallel` step other clients' operations interleave with these: not counted)."""
    return [
        op
        for op in s.of((s.client, *_SHARED), s.first)
        if op.phase == "fail" and isinstance(op.body, Failure)
    ]


def _acted(s: StepSlice) -> list[Verdict]:
    """A step that only acts passes unless one of its operations failed."""
    failed = _failures(s)
    if not failed:
        return []
    body = failed[0].body
    assert isinstance(body, Failure)
    return [_verdict("action", False, body.error, expected="the step's action to succeed")]


def _completion(s: StepSlice, op: Op) -> Op | None:
    """How ``op`` ended, within the step (a completion is recorded by its invoker's process)."""
    return next(
        (o for o in s.of((op.process,), s.first) if o.id == op.id and o.phase != "invoke"), None
    )


def _connect(s: StepSlice) -> Verdict:
    assert s.client is not None
    tries = checkers.attempts(s.of((s.client,), s.first), s.client)
    if not tries:
        return _verdict("connect", False, "no connect was attempted", expected="a new session")
    _, done = tries[-1]
    if done is None:
        return _verdict("connect", False, "the connect never completed", expected="a new session")
    body = done.body
    if isinstance(body, Failure):
        return _verdict("connect", False, body.error, expected="a new session")
    if isinstance(body, Outcome) and body.kind == "new":
        return _verdict("connect", True, "new session")
    seen = (
        body.kind + (f" ({body.reason})" if body.reason else "")
        if isinstance(body, Outcome)
        else "?"
    )
    return _verdict("connect", False, seen, expected="a new session")


def _chat(step: m.Chat, s: StepSlice) -> list[Verdict]:
    mine = s.mine()
    sends = [op for op in mine if op.phase == "invoke" and isinstance(op.body, SendMessage)]
    sent: list[Sent] = []
    for op in sends:
        done = _completion(s, op)
        if done is None or not isinstance(done.body, Sent):
            error = done.body.error if done and isinstance(done.body, Failure) else "no answer"
            return [_verdict("chat", False, f"the message could not be sent: {error}")]
        sent.append(done.body)
    if step.expect == "queued":
        live = [b.message_id for b in sent if b.connected]
        if live:
            return [
                _verdict(
                    "chat",
                    False,
                    "the client was connected",
                    expected="a disconnected client (messages to queue)",
                )
            ]
        return [_verdict("chat", True, f"{len(sent)} message(s) queued while disconnected")]
    view = s.view()
    waits = [op for op in mine if op.phase == "invoke" and isinstance(op.body, AwaitReply)]
    timeout = f"{float(step.timeout):g} s"
    for op in waits:
        assert isinstance(op.body, AwaitReply)
        done = _completion(s, op)
        parts, final = checkers.reply_parts(view, op.body.message_id)
        complete = done is not None and isinstance(done.body, Replied) and final
        if step.expect == "timeout":
            if not complete:
                why = done.body.error if done and isinstance(done.body, Failure) else "incomplete"
                return [
                    _verdict(
                        "chat", True, f"no complete reply within {timeout}, as expected ({why})"
                    )
                ]
            continue
        if not complete:
            why = (
                done.body.error
                if done and isinstance(done.body, Failure)
                else (f"{parts} parts without a final one")
            )
            return [
                _verdict(
                    "chat",
                    False,
                    why,
                    expected=f"a complete reply to {op.body.message_id} within {timeout}",
                    parts=parts,
                )
            ]
    if step.expect == "timeout":
        return [
            _verdict(
                "chat",
                False,
                f"every reply was complete ({len(waits)})",
                expected=f"no complete reply within {timeout}",
            )
        ]
    if len(waits) != step.messages:
        return [_verdict("chat", False, f"{len(waits)} of {step.messages} messages were sent")]
    if step.resend is not None:
        ids = [op.body.message_id for op in waits if isinstance(op.body, AwaitReply)]
        return [_resent(step.resend, s, view, ids)]
    return [_verdict("chat", True, f"{step.messages} message(s) answered")]


def _resent(how: str, s: StepSlice, view: ClientView, message_ids: list[str]) -> Verdict:
    """A message sent again with its id is not processed again: one final reply part per
    message, whatever was resent; a renumbered resend is answered ``duplicate`` (§6)."""
    failed = [op for op in s.mine() if op.phase == "fail" and isinstance(op.body, Failure)]
    if failed:
        body = failed[0].body
        assert isinstance(body, Failure)
        return _verdict("chat", False, body.error, expected="the message resent")
    for message_id in message_ids:
        finals = {
            d.position
            for ds in view.deliveries.values()
            for d in ds
            if d.reply_to == message_id and d.kind == "reply" and d.final
        }
        if len(finals) > 1:
            return _verdict(
                "chat",
                False,
                f"{message_id} was answered {len(finals)} times: processed again when resent",
                expected="a resent message answered once",
                finals=sorted(finals, key=str),
            )
        if how == "new_seq" and not any(
            d.reply_to == message_id and d.kind == "duplicate"
            for ds in view.deliveries.values()
            for d in ds
        ):
            return _verdict(
                "chat",
                False,
                f"no `duplicate` answer to {message_id} resent under a new number",
                expected="a renumbered resend answered duplicate",
            )
    return _verdict(
        "chat", True, f"{len(message_ids)} message(s) answered, resent ({how}), not processed again"
    )


def _send(step: m.Send, s: StepSlice) -> list[Verdict]:
    raw = [op for op in s.mine() if op.phase == "invoke" and isinstance(op.body, SendRaw)]
    done = _completion(s, raw[-1]) if raw else None
    if done is None or not isinstance(done.body, RawAnswer):
        error = done.body.error if done and isinstance(done.body, Failure) else "nothing sent"
        return [_verdict("send", False, error, expected="a frame sent")]
    answer = done.body
    seen = f"error {answer.error}, close {answer.close}"
    wanted = []
    if step.expect_error is not None:
        wanted.append((f"error {step.expect_error}", answer.error == step.expect_error))
    if step.expect_close is not None:
        wanted.append((f"close code {step.expect_close}", answer.close == step.expect_close))
    if not wanted:
        return []
    expected = " and ".join(w for w, _ in wanted)
    return [_verdict("send", all(ok for _, ok in wanted), seen, expected=expected)]


def _resume(step: m.Resume, s: StepSlice) -> list[Verdict]:
    assert s.client is not None
    tries = checkers.attempts(s.of((s.client,), s.first), s.client)
    outcomes = [d.body for _, d in tries if d is not None and isinstance(d.body, Outcome)]
    failures = [d.body for _, d in tries if d is not None and isinstance(d.body, Failure)]
    if step.expect == "unreachable":
        if outcomes:
            return [
                _verdict(
                    "resume",
                    False,
                    f"resume {outcomes[-1].kind}",
                    expected="the target to be unreachable",
                )
            ]
        why = failures[-1].error if failures else "no attempt"
        return [_verdict("resume", True, f"unreachable, as expected: {why}")]
    expected = f"resume {step.expect}" + (f" ({step.reason})" if step.reason else "")
    if not tries or tries[-1][1] is None:
        return [_verdict("resume", False, "the resume never completed", expected=expected)]
    last = tries[-1][1]
    assert last is not None
    if isinstance(last.body, Failure):
        return [_verdict("resume", False, last.body.error, expected=expected)]
    outcome = last.body
    assert isinstance(outcome, Outcome)
    seen = outcome.kind + (f" ({outcome.reason})" if outcome.reason else "")
    if outcome.warnings:
        seen += f", warnings {', '.join(outcome.warnings)}"
    if step.expect != "any" and outcome.kind != step.expect:
        return [_verdict("resume", False, seen, expected=expected)]
    if step.reason is not None and outcome.reason != step.reason:
        return [_verdict("resume", False, seen, expected=f"rejection reason {step.reason}")]
    if step.warnings is not None and sorted(step.warnings) != sorted(outcome.warnings):
        return [_verdict("resume", False, seen, expected=f"warnings {list(step.warnings)}")]
    consistent = checkers.outcome_consistent(outcome)
    if not consistent.passed:
        return [
            Verdict(
                check="windows",
                passed=False,
                message=consistent.message,
                evidence=consistent.evidence,
                expected="an outcome the advertised windows allow",
            )
        ]
    if outcome.gap_s is not None:
        seen += f" after a {outcome.gap_s:g} s gap"
    compared = outcome.kind != "rejected" and outcome.gap_s is not None and outcome.terms
    return [_verdict("resume", True, seen), *([consistent] if compared else [])]


def _race(step: m.Race, s: StepSlice) -> list[Verdict]:
    """§7.5's rule over the racers' answers; every racer's deliveries, whole and once; and
    the replies to what the one holding the session sent after."""
    answers = checkers.race_answers(s.own, step.clients)
    verdicts = [checkers.race(answers, step.lost)]
    for name in step.clients:
        delivered = checkers.delivery(s.view(name), s.positions)
        if not delivered.passed:
            verdicts.append(
                Verdict(
                    check="delivery",
                    passed=False,
                    message=f"{name}: {delivered.message}",
                    evidence=delivered.evidence,
                    expected=delivered.expected,
                )
            )
    holders = [a.client for a in answers if a.holds]
    if verdicts[0].passed and holders and step.messages:
        mine = StepSlice(
            ops=s.ops, first=s.first, client=holders[0], positions=s.positions, index=s.index
        )
        verdicts += _chat(m.Chat(messages=step.messages, timeout=step.timeout), mine)
    return verdicts


# --- expect -----------------------------------------------------------------------------------


def _last_answer(s: StepSlice, kind: type, process: str | None) -> Op | None:
    """The completion of the step's last invocation of ``kind`` by ``process``."""
    calls = [
        op for op in s.of((process,), s.first) if op.phase == "invoke" and isinstance(op.body, kind)
    ]
    return _completion(s, calls[-1]) if calls else None


def _snapshot(s: StepSlice, name: str) -> SnapshotTaken | None:
    """The snapshot ``name`` the step's client took, or else the last one of that name."""
    taken = [(op.process, op.body) for op in s.ops if isinstance(op.body, SnapshotTaken)]
    own = [b for p, b in taken if b.name == name and p == s.client]
    anyone = [b for _, b in taken if b.name == name]
    found = own or anyone
    return found[-1] if found else None


def _answer_of(ops: Sequence[Op], op_id: int | None) -> Op | None:
    if op_id is None:
        return None
    return next((o for o in ops if o.id == op_id and o.phase != "invoke"), None)


def _expect(step: m.Expect, s: StepSlice) -> list[Verdict]:
    verdicts: list[Verdict] = []
    if step.delivery is not None:
        d = step.delivery
        verdicts.append(
            checkers.delivery(
                s.view(),
                s.positions,
                no_loss=d.no_loss,
                no_duplicates=d.no_duplicates,
                order=d.order,
            )
        )
        if d.replies:
            view = s.view()
            verdicts.append(checkers.replies(view, s.sent_in_session(view.session)))
    if step.history is not None:
        verdicts.append(_expect_history(step.history, s))
        verdicts.append(checkers.delivery(s.view(), s.positions))
    if step.context is not None:
        verdicts.append(_expect_context(step.context, s))
    if step.resume is not None:
        verdicts.append(_expect_resume(step.resume, s))
    for latency in step.latency:
        limits = {
            name: value
            for name in ("p50", "p95", "p99", "max", "mean")
            if (value := getattr(latency, name, None)) is not None
        }
        kind = OPERATION_KINDS[latency.operation]
        measured = durations(s.ops, kind)
        if latency.against is None:
            verdicts.append(checkers.latency(latency.operation, measured, limits))
        else:
            baseline = durations(s.ops, OPERATION_KINDS[latency.against])
            verdicts.append(
                checkers.latency_ratio(
                    latency.operation, measured, latency.against, baseline, limits
                )
            )
    for metric in step.metrics:
        verdicts.append(_expect_metric(metric, s))
    if step.store is not None:
        verdicts.append(_expect_store(step.store, s))
    if not step.must_fail:
        return verdicts
    # Renamed, so summaries do not count these as the target's checks; the step as a whole
    # passes only when one of them failed.
    caught = [v for v in verdicts if not v.passed]
    inverted = [
        Verdict(
            check=f"{v.check} (must fail)",
            passed=v.passed,
            message=v.message,
            evidence=v.evidence,
            expected=v.expected,
        )
        for v in verdicts
    ]
    if caught:
        summary = "caught, as it must be: " + "; ".join(v.message for v in caught)
        return [*inverted, _verdict("must fail", True, summary)]
    every = "; ".join(v.message for v in verdicts)
    return [
        *inverted,
        _verdict(
            "must fail",
            False,
            f"every check passed: {every}",
            expected="the checks to catch the planted fault",
        ),
    ]


def _expect_history(h: m.HistoryExpect, s: StepSlice) -> Verdict:
    done = _last_answer(s, FetchHistory, s.client)
    if done is None or not isinstance(done.body, HistoryPage):
        why = done.body.error if done and isinstance(done.body, Failure) else "not read"
        return _verdict("history", False, f"the server's history could not be read: {why}")
    view = s.view()
    sent = s.sent_in_session(view.session)
    verdict = checkers.history(
        done.body.turns,
        sent,
        count=h.count,
        order=h.order,
        no_loss=h.no_loss,
        no_duplicates=h.no_duplicates,
        contains=h.contains,
    )
    if verdict.passed and h.replies:
        replies = checkers.replies_stored(done.body.turns, view, sent)
        if not replies.passed:
            return replies
    return verdict


def _expect_context(c: m.ContextExpect, s: StepSlice) -> Verdict:
    name = c.equals or c.against or "before_drop"
    snapshot = _snapshot(s, name)
    then = _answer_of(s.ops, snapshot.context_op) if snapshot else None
    if then is None or not isinstance(then.body, ContextValue):
        return _verdict("context", False, f"no snapshot named {name!r} with a context to compare")
    now = _last_answer(s, FetchContext, s.client)
    if now is None or not isinstance(now.body, ContextValue):
        why = now.body.error if now and isinstance(now.body, Failure) else "not read"
        return _verdict("context", False, f"the server's context could not be read: {why}")
    return checkers.context(then.body.context, now.body.context, preserved=c.preserved, keys=c.keys)


def _expect_resume(r: m.ResumeExpect, s: StepSlice) -> Verdict:
    view = s.view()
    if r.closed is not None:
        reason = view.closed[-1].reason if view.closed else None
        if reason != r.closed:
            return _verdict(
                "resume",
                False,
                f"connection closed with {reason}",
                expected=f"a close with reason {r.closed}",
            )
        if r.outcome is None and r.warnings is None and r.notice is None:
            return _verdict("resume", True, f"connection closed with {r.closed}")
    resumes = [o for o in view.outcomes if o.kind != "new"]
    if not resumes:
        return _verdict("resume", False, "no resume happened", expected="a resume")
    last = resumes[-1]
    if r.outcome not in (None, "any") and last.kind != r.outcome:
        return _verdict(
            "resume", False, f"last resume was {last.kind}", expected=f"resume {r.outcome}"
        )
    if r.warnings is not None and sorted(r.warnings) != sorted(last.warnings):
        return _verdict(
            "resume",
            False,
            f"warnings {list(last.warnings)}",
            expected=f"warnings {list(r.warnings)}",
        )
    notices = view.notices
    if r.notice is not None and bool(notices) != r.notice:
        return _verdict(
            "resume",
            False,
            f"{len(notices)} notices since the session began",
            expected=f"notice={r.notice}",
        )
    return _verdict("resume", True, f"last resume {last.kind}; {len(notices)} notice(s)")


def _expect_metric(metric: m.MetricExpect, s: StepSlice) -> Verdict:
    if metric.between is not None:
        readings = []
        for name in metric.between:
            snapshot = _snapshot(s, name)
            answer = _answer_of(s.ops, snapshot.metrics_op) if snapshot else None
            body = answer.body if answer else None
            readings.append(body.samples if isinstance(body, MetricsValue) else None)
        assert metric.growth is not None
        return checkers.metric_growth(metric.name, readings[0], readings[1], metric.growth)
    answer = _last_answer(s, FetchMetrics, "target")
    samples = answer.body.samples if answer and isinstance(answer.body, MetricsValue) else None
    if metric.growth is not None:
        first = next(
            (
                op.body.samples
                for op in s.ops
                if op.phase == "ok" and isinstance(op.body, MetricsValue)
            ),
            None,
        )
        return checkers.metric_growth(metric.name, first, samples, metric.growth)
    assert metric.value is not None
    return checkers.metric_value(samples, metric.name, metric.value)


def _expect_store(expect: m.StoreExpect, s: StepSlice) -> Verdict:
    answer = _last_answer(s, InspectStore, "target")
    if answer is None or not isinstance(answer.body, StoredRows):
        why = answer.body.error if answer and isinstance(answer.body, Failure) else "not read"
        return _verdict("store", False, f"the target's store could not be read: {why}")
    left = {table: n for table, n in answer.body.rows.items() if n}
    if expect.gone:
        if left:
            listed = ", ".join(f"{n} in {table}" for table, n in sorted(left.items()))
            return _verdict(
                "store",
                False,
                f"the session still has rows: {listed}",
                expected="no row of the session left",
                rows=left,
            )
        return _verdict("store", True, "no row of the session is left in the store")
    if not left:
        return _verdict("store", False, "no row of the session", expected="the session stored")
    return _verdict("store", True, f"the session is stored ({sum(left.values())} rows)")
