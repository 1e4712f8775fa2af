"""A JSON Schema of scenario files, as they are written, for editors (docs/scenarios.md, "Editors").

It starts from ``msgspec.json.schema(Scenario)``, which describes the model, and rewrites what the
YAML syntax writes differently: a step is ``{kind: fields}`` (a one-key object) rather than an
object tagged with ``step``, may be a scalar shorthand (``wait: 15s``) or empty (``heal:``), and
durations and thresholds are strings. The loader stays the authority: the schema cannot express
rules such as "the `latency` toxic needs `latency`".
"""

from __future__ import annotations

import inspect
from typing import Any, Final

import msgspec

from harness.scenario.durations import Duration, Threshold, format_duration
from harness.scenario.loader import SHORTHANDS
from harness.scenario.model import Scenario, step_kinds

__all__ = ["json_schema"]

SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
_DURATION_PATTERN: Final = r"^\s*((\d+(\.\d*)?|\.\d+)\s*(ms|s|m|h)\s*)+$"
_THRESHOLD_PATTERN: Final = r"^\s*(<=|>=|==|<|>)\s*[-+]?(\d+(\.\d*)?|\.\d+)\s*(ms|s|m|h|%)?\s*$"


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) that a scenario file, read as YAML, satisfies."""
    schema = msgspec.json.schema(Scenario, schema_hook=_schema_hook)
    definitions: dict[str, Any] = schema["$defs"]
    _add_factory_defaults(definitions)
    kinds = step_kinds()
    step_refs = []
    for kind, cls in kinds.items():
        name = cls.__name__
        fields = definitions[name]
        del fields["properties"]["step"]
        fields["required"] = [f for f in fields["required"] if f != "step"]
        value: list[dict[str, Any]] = [{"$ref": f"#/$defs/{name}"}]
        if kind in SHORTHANDS:
            value.append(fields["properties"][SHORTHANDS[kind]])
        if not fields["required"]:
            del fields["required"]
            value.append({"type": "null"})  # "- heal:" means all defaults
        definitions[f"{name}Step"] = {
            "title": f"{kind} step",
            "description": fields.get("description", ""),
            "type": "object",
            "properties": {kind: {"anyOf": value}},
            "required": [kind],
            "additionalProperties": False,
        }
        step_refs.append({"$ref": f"#/$defs/{name}Step"})
    rewritten = _replace_step_unions(schema, {"oneOf": step_refs})
    _clean_descriptions(rewritten)
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "Scenario file of the WebSocket session-continuity harness",
        **rewritten,
    }


def _schema_hook(tp: type) -> dict[str, Any]:
    if tp is Duration:
        return {
            "description": "Seconds, or a number with a unit: '500ms', '15s', '2m', '1h', '1m30s'.",
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": _DURATION_PATTERN},
            ],
        }
    if tp is Threshold:
        return {
            "description": "A comparison and a value: '< 1s', '>= 0.95', '< 5%', '== 100%'.",
            "type": "string",
            "pattern": _THRESHOLD_PATTERN,
        }
    raise NotImplementedError(f"no schema for {tp!r}")


def _add_factory_defaults(definitions: dict[str, Any]) -> None:
    """Write the defaults msgspec leaves out because they come from a default_factory."""
    for name, cls in _structs().items():
        for field in msgspec.structs.fields(cls):
            if field.default_factory is msgspec.NODEFAULT:
                continue
            default = field.default_factory()
            encoded = (
                format_duration(default)
                if isinstance(default, Duration)
                else msgspec.to_builtins(default)
            )
            definitions[name]["properties"][field.encode_name]["default"] = encoded


def _structs() -> dict[str, type[msgspec.Struct]]:
    """Every struct class of the model, by the name msgspec gives its definition."""
    found: dict[str, type[msgspec.Struct]] = {}
    pending: list[msgspec.inspect.Type] = [msgspec.inspect.type_info(Scenario)]
    while pending:
        info = pending.pop()
        if isinstance(info, msgspec.inspect.StructType):
            if info.cls.__name__ in found:
                continue
            found[info.cls.__name__] = info.cls
            pending.extend(f.type for f in info.fields)
        elif isinstance(info, msgspec.inspect.UnionType):
            pending.extend(info.types)
        elif isinstance(info, msgspec.inspect.VarTupleType):
            pending.append(info.item_type)
        elif isinstance(info, msgspec.inspect.TupleType):
            pending.extend(info.item_types)
    return found


def _replace_step_unions(node: Any, replacement: dict[str, Any]) -> Any:
    """Copy of ``node`` with every union discriminated on ``step`` replaced."""
    if isinstance(node, dict):
        discriminator = node.get("discriminator")
        if isinstance(discriminator, dict) and discriminator.get("propertyName") == "step":
            return dict(replacement)
        return {k: _replace_step_unions(v, replacement) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_step_unions(item, replacement) for item in node]
    return node


def _clean_descriptions(node: Any) -> None:
    """Docstrings as plain text: dedented, with Markdown code spans instead of RST ones."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                node[key] = inspect.cleandoc(value).replace("``", "`")
            else:
                _clean_descriptions(value)
    elif isinstance(node, list):
        for item in node:
            _clean_descriptions(item)
