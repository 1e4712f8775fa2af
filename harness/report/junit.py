"""``junit.xml``: one test case per scenario, for CI systems that read JUnit results."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from harness.report.results import RunRecord, ScenarioRecord


def render(record: RunRecord) -> str:
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
    for key, value in record.environment.items():
        ET.SubElement(properties, "property", name=key, value=value)
    for scenario in record.scenarios:
        suite.append(_case(scenario))
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def _case(scenario: ScenarioRecord) -> ET.Element:
    case = ET.Element(
        "testcase", name=scenario.name, classname=scenario.file, time=f"{scenario.seconds:.3f}"
    )
    properties = ET.SubElement(case, "properties")
    figures = {
        "clock": scenario.clock or "none",
        "virtual_seconds": f"{scenario.virtual_seconds:g}",
        "steps": str(len(scenario.steps)),
    }
    for operation, values in scenario.durations.items():
        if values:
            figures[f"{operation}_max_ms"] = f"{max(values) * 1000:.1f}"
            figures[f"{operation}_count"] = str(len(values))
    for key, value in figures.items():
        ET.SubElement(properties, "property", name=key, value=value)
    step = next((s for s in scenario.steps if s.status in ("failed", "error")), None)
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
