"""``harness check``: judge a saved run again from its histories alone (as Jepsen and Elle do).

For every step in a scenario's history, the step's definition is found in the scenario saved
beside it, the history is cut where the step ended, and ``harness.judge`` gives its verdicts
again. Any verdict, step status or scenario status that differs from the stored one is a
difference: a history edited by hand (a delivery removed or doubled) shows up here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.checkers import Verdict
from harness.driver.base import PositionModel
from harness.history import History, Op, StepEnd, StepStart
from harness.judge import StepSlice, judge
from harness.opindex import OpIndex
from harness.results import RunResult, ScenarioResult, StepResult
from harness.runner import apply_verdicts, resolve_step
from harness.scenario import model as m


@dataclass
class Rechecked:
    """What judging one scenario again found."""

    scenario: str
    steps: int = 0
    differences: list[str] = field(default_factory=list)
    status: str = ""


def recheck(record: RunResult) -> list[Rechecked]:
    """Every scenario of the run, judged again."""
    return [recheck_scenario(s) for s in record.scenarios if s.scenario is not None]


def rejudge_steps(result: ScenarioResult) -> list[StepResult]:
    """The leaf steps of the scenario's history, each judged again from the history."""
    assert result.scenario is not None
    ops = result.history
    # Positions in the list, not the stored `index`: a history edited by hand is judged as it is.
    ends = {op.id: i for i, op in enumerate(ops) if isinstance(op.body, StepEnd)}
    positions = PositionModel(order=result.positions, continues_across_sessions=False)  # type: ignore[arg-type]
    index = OpIndex(History(ops))
    out: list[StepResult] = []
    for position, op in enumerate(ops):
        body = op.body
        if not isinstance(body, StepStart) or op.phase != "invoke":
            continue
        step = resolve_step(result.scenario, body.path)
        if step is None or isinstance(step, m.Repeat | m.Parallel):
            continue
        end = ends.get(op.id, len(ops))
        fresh = StepResult(path=body.path, kind=body.kind, status="passed", client=body.client)
        verdicts = judge(
            step,
            StepSlice(
                ops=ops[:end],
                first=position + 1,
                client=body.client,
                positions=positions,
                index=index,
            ),
        )
        apply_verdicts(fresh, verdicts)
        out.append(fresh)
    return out


def recheck_scenario(result: ScenarioResult) -> Rechecked:
    found = Rechecked(result.scenario.name if result.scenario else result.name)
    stored = {s.path: s for s in result.steps}
    fresh = rejudge_steps(result)
    for step in fresh:
        found.steps += 1
        before = stored.get(step.path)
        where = f"{result.name}, step {step.path} ({step.kind})"
        if before is None:
            if step.status != "passed":
                found.differences.append(f"{where}: stored as passed, judged {step.status}")
            continue
        if before.status in ("failed", "error") and not before.verdicts:
            continue  # stopped by the harness itself (no client, a harness bug): not judged
        if before.status != step.status:
            found.differences.append(
                f"{where}: stored {before.status}, judged {step.status} ({step.message})"
            )
        elif _key(before.verdicts) != _key(step.verdicts):
            found.differences.append(f"{where}: verdicts differ: {step.message}")
    found.status = _status(result, fresh)
    if result.status in ("passed", "failed") and found.status != result.status:
        found.differences.append(
            f"{result.name}: stored {result.status}, judged {found.status} from its history"
        )
    return found


def _status(result: ScenarioResult, fresh: Sequence[StepResult]) -> str:
    if result.status in ("error", "skipped"):
        return result.status
    # A comparison with a saved run is not in the history: its stored verdict stands.
    compared = [s for s in result.steps if s.kind == "baseline"]
    return "failed" if any(s.status != "passed" for s in [*fresh, *compared]) else "passed"


def _key(verdicts: Sequence[Verdict]) -> list[tuple[str, bool, str]]:
    return [(v.check, v.passed, v.message) for v in verdicts]


def unfinished(ops: Sequence[Op]) -> list[Op]:
    """Invocations without a completion (a history cut short)."""
    done = {op.id for op in ops if op.phase != "invoke"}
    return [op for op in ops if op.phase == "invoke" and op.id not in done]
