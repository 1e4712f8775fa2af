"""The editor schema of scenario files, and the examples of docs/scenarios.md against it."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.scenario import SHORTHANDS, ScenarioError, json_schema, load_text, step_kinds

DOCS = Path(__file__).resolve().parents[3] / "docs" / "scenarios.md"
_FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)


# --------------------------------------------------------------------------------------------
# A structural check against the schema: the keywords json_schema() uses, nothing more.
# --------------------------------------------------------------------------------------------

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def shape_errors(
    value: Any, schema: dict[str, Any] | bool, root: dict[str, Any], at: str = "$"
) -> list[str]:
    """Where ``value`` breaks ``schema`` (empty: it fits); ``$ref`` resolves against ``root``."""
    if isinstance(schema, bool):
        return [] if schema else [f"{at}: not allowed"]
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/$defs/")
        return shape_errors(value, root["$defs"][name], root, at)
    errors: list[str] = []
    if "type" in schema:
        allowed = _TYPES[schema["type"]]
        if not isinstance(value, allowed) or (
            isinstance(value, bool) and schema["type"] in ("integer", "number")
        ):
            return [f"{at}: expected {schema['type']}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{at}: {value!r} not in {schema['enum']}")
    if "pattern" in schema and re.search(schema["pattern"], value) is None:
        errors.append(f"{at}: {value!r} does not match {schema['pattern']}")
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(f"{at}: shorter than {schema['minLength']}")
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{at}: below {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{at}: above {schema['maximum']}")
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(f"{at}: fewer than {schema['minItems']} items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{at}: more than {schema['maxItems']} items")
    prefix = schema.get("prefixItems", [])
    for index, item in enumerate(value if isinstance(value, list) else []):
        item_schema = prefix[index] if index < len(prefix) else schema.get("items", True)
        errors += shape_errors(item, item_schema, root, f"{at}[{index}]")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        errors += [f"{at}: missing {key}" for key in schema.get("required", []) if key not in value]
        for key, item in value.items():
            if key in properties:
                errors += shape_errors(item, properties[key], root, f"{at}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{at}: unexpected key {key}")
    if "anyOf" in schema:
        results = [shape_errors(value, option, root, at) for option in schema["anyOf"]]
        if all(results):
            errors.append(f"{at}: matches no option of anyOf: {results}")
    if "oneOf" in schema:
        results = [shape_errors(value, option, root, at) for option in schema["oneOf"]]
        matching = sum(1 for result in results if not result)
        if matching != 1:
            errors.append(f"{at}: matches {matching} options of oneOf")
    return errors


def doc_examples() -> list[tuple[str, str, str]]:
    """The fenced blocks of docs/scenarios.md: (info string, body, the next block's body)."""
    blocks = [(m["info"].strip(), m["body"]) for m in _FENCE.finditer(DOCS.read_text())]
    return [
        (info, body, blocks[i + 1][1] if i + 1 < len(blocks) else "")
        for i, (info, body) in enumerate(blocks)
    ]


def as_scenario(body: str) -> str:
    """A complete example as it is; a list of steps put under ``steps:`` of a scenario."""
    if isinstance(yaml.safe_load(body), list):
        return "name: example\nsteps:\n" + textwrap.indent(body, "  ")
    return body


VALID = [body for info, body, _ in doc_examples() if info == "yaml"]
BROKEN = [(info, body, out) for info, body, out in doc_examples() if info.startswith("yaml file=")]


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_steps_are_one_key_objects_for_every_kind() -> None:
    """Each step of the schema is an object with exactly one, required, property: its kind."""
    schema = json_schema()
    steps = schema["$defs"]["Scenario"]["properties"]["steps"]["items"]
    wrappers = [schema["$defs"][ref["$ref"].removeprefix("#/$defs/")] for ref in steps["oneOf"]]
    assert list(step_kinds()) == [next(iter(w["properties"])) for w in wrappers]
    assert all(
        (1, [next(iter(w["properties"]))], False)
        == (len(w["properties"]), w["required"], w["additionalProperties"])
        for w in wrappers
    )


def test_nested_steps_use_the_same_one_key_form() -> None:
    """``repeat`` and ``parallel`` list their steps with the same oneOf as the scenario."""
    definitions = json_schema()["$defs"]
    top = definitions["Scenario"]["properties"]["steps"]["items"]
    assert top == definitions["Repeat"]["properties"]["steps"]["items"]
    assert top == definitions["Parallel"]["properties"]["steps"]["items"]


def test_step_values_allow_shorthands_and_no_value_where_the_loader_does() -> None:
    """A kind's value is its fields, its shorthand scalar, or null if no field is required."""
    definitions = json_schema()["$defs"]
    for kind, cls in step_kinds().items():
        options = definitions[f"{cls.__name__}Step"]["properties"][kind]["anyOf"]
        fields = definitions[cls.__name__]
        expected = [{"$ref": f"#/$defs/{cls.__name__}"}]
        if kind in SHORTHANDS:
            expected.append(fields["properties"][SHORTHANDS[kind]])
        if "required" not in fields:
            expected.append({"type": "null"})
        assert "step" not in fields["properties"]
        assert expected == options, kind


def test_durations_and_thresholds_are_strings_or_seconds_with_defaults() -> None:
    """Durations take numbers or unit strings and show their default as written in a file."""
    scenario = json_schema()["$defs"]["Scenario"]["properties"]
    assert "60s" == scenario["timeout"]["default"]
    assert ["number", "string"] == [option["type"] for option in scenario["timeout"]["anyOf"]]
    latency = json_schema()["$defs"]["LatencyExpect"]["properties"]["p95"]["anyOf"][0]
    assert ("string", True) == (latency["type"], "pattern" in latency)


def test_schema_rejects_what_the_loader_rejects_structurally() -> None:
    """The structural check is not vacuous: an unknown kind or a missing field fails it."""
    schema = json_schema()
    assert shape_errors({"name": "t", "steps": [{"dorp": "reset"}]}, schema, schema)
    assert shape_errors({"name": "t", "steps": [{"wait": None}]}, schema, schema)
    assert shape_errors({"name": "t", "steps": [{"drop": "reset", "wait": 1}]}, schema, schema)
    assert shape_errors({"steps": [{"heal": None}]}, schema, schema)
    assert [] == shape_errors({"name": "t", "steps": [{"heal": None}]}, schema, schema)


def test_docs_have_examples_to_check() -> None:
    """docs/scenarios.md has a valid example per step kind and broken ones with their output."""
    kinds_used = {
        next(iter(step))
        for body in VALID
        for step in _all_steps(yaml.safe_load(as_scenario(body)).get("steps", []))
    }
    assert set(step_kinds()) == kinds_used
    assert 3 <= len(BROKEN)


@pytest.mark.parametrize("body", VALID, ids=[f"example{i}" for i in range(len(VALID))])
def test_every_doc_example_loads_and_fits_the_schema(body: str) -> None:
    """Each valid example of docs/scenarios.md loads and matches the schema's shape."""
    text = as_scenario(body)
    load_text(text, "example.yaml")
    schema = json_schema()
    assert [] == shape_errors(yaml.safe_load(text), schema, schema)


@pytest.mark.parametrize(
    ("info", "body", "output"), BROKEN, ids=[info.split("=")[1] for info, _, _ in BROKEN]
)
def test_every_broken_doc_example_gives_the_documented_errors(
    info: str, body: str, output: str
) -> None:
    """Each broken example of docs/scenarios.md fails with exactly the lines shown after it."""
    with pytest.raises(ScenarioError) as caught:
        load_text(body, info.split("=")[1])
    assert output.rstrip("\n") == str(caught.value)


def _all_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for step in steps:
        found.append(step)
        value = next(iter(step.values()))
        if isinstance(value, dict) and isinstance(value.get("steps"), list):
            found += _all_steps(value["steps"])
    return found
