"""``harness selfcheck``: the whole chain end to end, as one built-in scenario of the engine.

The scenario (``harness/builtin/selfcheck.yaml``) runs through the same engine as
``harness run``, against the embedded reference server behind a real Toxiproxy, and writes
the same reports; selfcheck is only a name for a scenario that must pass on any machine the
harness is installed on.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from harness import exit_codes
from harness.engine import Engine, RunOptions
from harness.report import write_all
from harness.scenario import load_text

SCENARIO = "selfcheck.yaml"


def scenario_path() -> Path:
    return Path(str(files("harness.builtin").joinpath(SCENARIO)))


async def selfcheck(report_dir: Path) -> int:
    """Run the built-in scenario; write its reports; 0 when it passed, 1 when it did not."""
    path = scenario_path()
    scenario = load_text(path.read_text(encoding="utf-8"), str(path))
    async with Engine(RunOptions()) as engine:
        record = await engine.run([(path, scenario)], suite="selfcheck")
    stamp = record.started.replace("-", "").replace(":", "") + "-selfcheck"
    folder = write_all(record, report_dir, stamp)
    result = record.scenarios[0]
    print(f"selfcheck: {result.status.upper()} ({result.checks} checks); report {folder}")
    if result.status != "passed":
        step = result.first_failure
        print(f"  {step.path} ({step.kind}): {step.message}" if step else f"  {result.error}")
        return (
            exit_codes.INFRASTRUCTURE_ERROR
            if result.infrastructure
            else (exit_codes.SCENARIO_FAILED)
        )
    return exit_codes.OK
