"""The fault matrix's verdicts and its markdown, on hand-made results."""

from __future__ import annotations

from harness.checkers import Verdict
from harness.matrix import Matrix, evidence, render
from harness.results import ScenarioResult, StepResult


def result(status: str) -> ScenarioResult:
    return ScenarioResult(name="s", file="s.yaml", status=status)  # type: ignore[arg-type]


def matrix() -> Matrix:
    found = Matrix(["a", "b", "c"], ["one", "two"], left_out={"three": "failed without a fault"})
    found.cells = {
        ("a", "one"): result("failed"),
        ("a", "two"): result("passed"),
        ("b", "one"): result("error"),
        ("b", "two"): result("passed"),
        ("c", "one"): result("failed"),
        ("c", "two"): result("failed"),
    }
    return found


def test_a_fault_is_killed_only_by_a_failed_scenario() -> None:
    """A failure with the fault planted catches it; an error or a pass does not."""
    found = matrix()
    assert (["one"], [], ["one", "two"]) == (
        found.killed_by("a"),
        found.killed_by("b"),
        found.killed_by("c"),
    )
    assert (["b"], 2 / 3) == (found.survivors, found.kill_rate)


def test_the_markdown_matrix_marks_each_cell_and_names_the_survivors() -> None:
    """Rows are faults, columns scenarios; survivors and left-out scenarios are listed."""
    text = render(matrix(), suite="suite")
    assert "**Kill rate:** 2 of 3 faults (67%) caught by at least one scenario" in text
    assert "| `a` | ✗ | · | 1 |" in text
    assert "| `b` | E | · | 0 |" in text
    assert "| `c` | ✗ | ✗ | 2 |" in text
    assert "**Not caught by any scenario:** `b`" in text
    assert "- three: failed without a fault" in text


def test_an_empty_catalogue_kills_nothing() -> None:
    """No faults: a kill rate of 0, never a vacuous 100%."""
    assert 0.0 == Matrix([], ["one"]).kill_rate


def test_the_evidence_names_the_step_and_check_of_each_kill() -> None:
    """Each kill is reported with its failed step, the check that failed, and what it saw;
    faults nothing caught have no entry of scenarios."""
    found = matrix()
    step = StepResult(
        path="4",
        kind="expect",
        status="failed",
        expected="delivery to hold",
        seen="position 3 arrived after 4 (reordered)",
        verdicts=[
            Verdict(check="history", passed=True, message="fine"),
            Verdict(check="delivery", passed=False, message="position 3 arrived after 4"),
        ],
    )
    found.cells[("a", "one")] = ScenarioResult(
        name="one", file="one.yaml", status="failed", steps=[step]
    )
    assert {
        "one": {
            "step": "4 (expect)",
            "check": "delivery",
            "expected": "delivery to hold",
            "seen": "position 3 arrived after 4 (reordered)",
        }
    } == evidence(found)["a"]
    assert {} == evidence(found)["b"]
