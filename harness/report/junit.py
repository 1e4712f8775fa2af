"""``junit.xml``: one test case per scenario, for CI systems that read JUnit results."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from harness.report.figures import durations_by_operation
from harness.results import RunResult, ScenarioResult


def render(record: RunResult) -> str:
    """The JUnit XML document of a run."""
    totals = record.totals
    suite = ET.Element(
        "testsuite",
        name=record.suite or "scenarios",
        tests=str(totals["total"]),
        failures=str(totals["failed"]),
        errors=str(totals["error"]),
        skipped=str(totals["skipped"]),
        time=f"{record.seconds:.3f}",
        timestamp=record.started,
    )
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", name="verdict", value=record.verdict)
    for key, value in record.environment.items():
        ET.SubElement(properties, "property", name=key, value=value)
    for scenario in record.scenarios:
        suite.append(_case(scenario))
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def _case(scenario: ScenarioResult) -> ET.Element:
    case = ET.Element(
        "testcase", name=scenario.name, classname=scenario.file, time=f"{scenario.seconds:.3f}"
    )
    properties = ET.SubElement(case, "properties")
    figures = {
        "clock": scenario.clock or "none",
        "virtual_seconds": f"{scenario.virtual_seconds:g}",
        "steps": str(len(scenario.steps)),
    }
    figures["checks"] = str(scenario.checks)
    for operation, values in durations_by_operation(scenario).items():
        if values:
            figures[f"{operation}_max_ms"] = f"{max(values) * 1000:.1f}"
            figures[f"{operation}_count"] = str(len(values))
    for key, value in figures.items():
        ET.SubElement(properties, "property", name=key, value=value)
    step = scenario.first_failure
    if scenario.status == "failed" and step is not None:
        failure = ET.SubElement(
            case, "failure", message=f"step {step.path} ({step.kind}): {step.message}"
        )
        failure.text = f"expected: {step.expected}\nseen: {step.seen}\nevidence: {step.evidence}"
    elif scenario.status == "error":
        error = ET.SubElement(
            case, "error", message=scenario.error or (step.message if step else "")
        )
        error.text = scenario.error
    elif scenario.status == "skipped":
        ET.SubElement(case, "skipped", message=scenario.error)
    return case
