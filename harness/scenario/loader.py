"""Read scenario files into ``Scenario`` models; every mistake names its file, line, column, field.

How (docs/scenarios.md, "Errors"; docs/dependencies.md, "Error quality"):

1. ``yaml.compose`` (SafeLoader rules) gives a node tree whose nodes carry their position.
2. The tree is walked here into plain data, recording the position of every mapping key and value
   by its path (``("steps", 3, "how")``). Duplicate keys are rejected, and each step, written
   ``- drop: {how: reset}`` or ``- drop: reset``, becomes ``{"step": "drop", "how": "reset"}``.
3. ``msgspec.convert`` builds the typed model. It stops at the first error and names its path only
   in the message text (`` - at `$.steps[3].how` ``); ``parse_msgspec_error`` reads it back.
4. ``cross_check`` applies the rules that span the scenario (client and snapshot names, routes).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

import msgspec
import yaml
from yaml.constructor import SafeConstructor
from yaml.error import Mark
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from harness.scenario.crosscheck import cross_check
from harness.scenario.model import ConstraintError, Scenario, dec_hook, step_kinds
from harness.scenario.problems import Problem, ScenarioError, closest

__all__ = [
    "SHORTHANDS",
    "MsgspecError",
    "load",
    "load_many",
    "load_text",
    "parse_msgspec_error",
]

FieldPath = tuple[str | int, ...]

# Step kinds that may be written with a scalar instead of a mapping, and the field it fills:
# ``- wait: 15s`` is ``- wait: {duration: 15s}``. Any kind may be written with no value at all
# (``- heal:``), which means "all defaults".
SHORTHANDS: Final[dict[str, str]] = {
    "chat": "messages",
    "drop": "how",
    "wait": "duration",
    "resume": "expect",
    "snapshot": "name",
    "kill_node": "node",
    "start_node": "node",
    "store_link": "how",
}
_NESTED_STEPS: Final = frozenset({"repeat", "parallel", "once"})
_KINDS: Final = tuple(step_kinds())
_MAP_TAG: Final = "tag:yaml.org,2002:map"
_SEQ_TAG: Final = "tag:yaml.org,2002:seq"
_NULL_TAG: Final = "tag:yaml.org,2002:null"
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"


def load(path: str | os.PathLike[str]) -> Scenario:
    """Load one scenario file; raise ``ScenarioError`` naming every problem found."""
    return _load_file(Path(path))[0]


def load_text(text: str, filename: str = "<string>") -> Scenario:
    """Load a scenario from YAML text; ``filename`` is what the problems name as the file."""
    return _load(text, filename)[0]


def load_files(paths: Iterable[str | os.PathLike[str]]) -> list[tuple[Path, Scenario]]:
    """Load every scenario under ``paths`` with the file it came from (see ``load_many``).

    Directories are expanded recursively, in sorted order. Every file is read before raising, so
    the ``ScenarioError`` lists the problems of all of them; two scenarios with the same ``name``
    are a problem too.
    """
    problems: list[Problem] = []
    scenarios: list[tuple[Path, Scenario]] = []
    first_file: dict[str, str] = {}
    for path in _expand(paths, problems):
        try:
            scenario, builder = _load_file(path)
        except ScenarioError as error:
            problems.extend(error.problems)
            continue
        if scenario.name in first_file:
            problems.append(
                builder.problem(
                    ("name",),
                    f"scenario name `{scenario.name}` is also used by {first_file[scenario.name]}",
                )
            )
            continue
        first_file[scenario.name] = str(path)
        scenarios.append((Path(path), scenario))
    if problems:
        raise ScenarioError(problems)
    return scenarios


def load_many(paths: Iterable[str | os.PathLike[str]]) -> list[Scenario]:
    """Load every scenario under ``paths``: files, and directories (``*.yaml`` and ``*.yml``).

    Directories are expanded recursively, in sorted order. Every file is read before raising, so
    the ``ScenarioError`` lists the problems of all of them; two scenarios with the same ``name``
    are a problem too.
    """
    return [scenario for _, scenario in load_files(paths)]


def _expand(paths: Iterable[str | os.PathLike[str]], problems: list[Problem]) -> list[Path]:
    files: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                (p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()),
                key=lambda p: p.relative_to(path).parts,
            )
            if not found:
                problems.append(Problem(str(path), 0, 0, "", "no *.yaml or *.yml file here"))
            files.extend(found)
        else:
            files.append(path)
    return files


def _load_file(path: Path) -> tuple[Scenario, _Builder]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        problem = Problem(str(path), 0, 0, "", f"cannot read the file: {reason}")
        raise ScenarioError([problem]) from None
    return _load(text, str(path))


def _load(text: str, filename: str) -> tuple[Scenario, _Builder]:
    builder = _Builder(filename)
    data = builder.document(text)
    if builder.problems:
        raise ScenarioError(builder.problems)
    try:
        scenario = msgspec.convert(data, Scenario, dec_hook=dec_hook)
    except msgspec.ValidationError as error:
        raise ScenarioError([builder.validation_problem(error, data)]) from None
    issues = cross_check(scenario)
    if issues:
        raise ScenarioError(builder.problem(i.path, i.message, i.suggestion) for i in issues)
    return scenario, builder


# --------------------------------------------------------------------------------------------
# msgspec's error text
# --------------------------------------------------------------------------------------------

_AT_SUFFIX: Final = re.compile(r"(?P<message>.*?)(?: - at `(?P<path>\$[^`]*)`)?", re.DOTALL)
_PATH_TOKEN: Final = re.compile(r"\.(?P<field>[^.\[`]+)|\[(?P<index>\d+)\]")
_NAMED_FIELD: Final = re.compile(
    r"Object (?P<kind>missing required|contains unknown) field `(?P<field>[^`]+)`"
)


class MsgspecError(NamedTuple):
    """What ``parse_msgspec_error`` reads out of a ``msgspec.ValidationError``'s text."""

    message: str
    """The message without its `` - at `$...` `` suffix."""
    path: FieldPath
    """Where the error is; for a missing or unknown field, the path ends with that field."""
    named: Literal["missing", "unknown"] | None
    """Set when the message names a missing or an unknown field (the last element of path)."""


def parse_msgspec_error(text: str) -> MsgspecError:
    """Read the path out of msgspec's error text, which is msgspec's only way of giving it.

    ``"Expected `int`, got `str` - at `$.steps[1].count`"`` gives ``("steps", 1, "count")``;
    no suffix means the root; ``"Object missing required field `how` - at `$.steps[0]`"`` gives
    ``("steps", 0, "how")``. A dict key (``[...]``) ends the path: the language has no user-keyed
    mappings, so it does not occur. The wording is pinned by the ``msgspec<0.23`` bound.
    """
    match = _AT_SUFFIX.fullmatch(text)
    assert match is not None  # the pattern matches any text
    message, raw_path = match["message"], match["path"] or "$"
    path: list[str | int] = []
    position = 1  # after "$"
    while position < len(raw_path):
        token = _PATH_TOKEN.match(raw_path, position)
        if token is None:
            break
        path.append(token["field"] if token["index"] is None else int(token["index"]))
        position = token.end()
    named = _NAMED_FIELD.fullmatch(message)
    if named is None:
        return MsgspecError(message, tuple(path), None)
    kind: Literal["missing", "unknown"] = (
        "missing" if named["kind"] == "missing required" else "unknown"
    )
    return MsgspecError(message, (*path, named["field"]), kind)


# --------------------------------------------------------------------------------------------
# Walking the YAML node tree
# --------------------------------------------------------------------------------------------


class _Builder:
    """Turns one file's node tree into plain data and remembers where each path came from."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.key_marks: dict[FieldPath, Mark] = {}
        self.value_marks: dict[FieldPath, Mark] = {}
        self.problems: list[Problem] = []
        self._constructor = SafeConstructor()
        self._active: set[int] = set()

    # -- problems ---------------------------------------------------------------------------

    def problem(
        self, path: FieldPath, message: str, suggestion: str | None = None, mark: Mark | None = None
    ) -> Problem:
        """A problem at ``path``: at ``mark``, else at its key, else at its nearest parent."""
        if mark is None:
            mark = self._mark_for(path)
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        return Problem(self.filename, line, column, _render(path), message, suggestion)

    def _add(
        self, path: FieldPath, message: str, suggestion: str | None = None, mark: Mark | None = None
    ) -> None:
        self.problems.append(self.problem(path, message, suggestion, mark))

    def _mark_for(self, path: FieldPath) -> Mark | None:
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            mark = self.key_marks.get(prefix) or self.value_marks.get(prefix)
            if mark is not None:
                return mark
        return None

    def validation_problem(self, error: msgspec.ValidationError, data: object) -> Problem:
        """Map msgspec's first error to a problem with a position and, if it can, a suggestion."""
        parsed = parse_msgspec_error(str(error))
        path, message, suggestion = parsed.path, parsed.message, None
        cause = error.__cause__
        if isinstance(cause, ConstraintError):
            message = str(cause)
            if cause.field is not None:
                path = (*path, cause.field)
        elif parsed.named == "unknown":
            field = str(path[-1])
            message = f"unknown field `{field}`"
            suggestion = closest(field, _field_names(_type_at(path[:-1], data)))
        elif parsed.named == "missing":
            message = f"missing required field `{path[-1]}`"
        elif message.startswith("Invalid enum value"):
            allowed = _literal_values(_type_at(path, data))
            value = _value_at(data, path)
            message = f"invalid value {value!r}; expected one of: {', '.join(allowed)}"
            suggestion = closest(str(value), allowed)
        elif message.startswith("Expected `array` of length >= 1"):
            message = "needs at least one item"
        elif message[:1].isupper() and cause is None:
            message = message[0].lower() + message[1:]
        return self.problem(path, message, suggestion)

    # -- documents --------------------------------------------------------------------------

    def document(self, text: str) -> Any:
        """The plain data of the file's one document (``None`` if it has problems)."""
        try:
            documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        except yaml.MarkedYAMLError as error:
            self.problems.append(_syntax_problem(self.filename, error, text))
            return None
        except yaml.YAMLError as error:  # e.g. a character YAML does not allow
            self.problems.append(Problem(self.filename, 0, 0, "", f"not valid YAML: {error}"))
            return None
        if not documents or documents[0] is None:
            self._add((), "the file is empty: a scenario needs at least `name` and `steps`")
            return None
        if len(documents) > 1:
            self._add(
                (),
                "a file holds one scenario, and this is a second YAML document (after `---`);"
                " put it in a file of its own",
                mark=documents[1].start_mark,
            )
            return None
        root = documents[0]
        self.value_marks[()] = root.start_mark
        if not isinstance(root, MappingNode):
            self._add((), "a scenario is a mapping with at least `name` and `steps`")
            return None
        return self._mapping(root, (), nested_steps=True)

    # -- nodes ------------------------------------------------------------------------------

    def _enter(self, node: Node, path: FieldPath) -> bool:
        """Start building ``node``; false (and a problem) if it is already being built."""
        if id(node) in self._active:
            self._add(path, "a YAML alias refers to a node that contains it", mark=node.start_mark)
            return False
        self._active.add(id(node))
        return True

    def _build(self, node: Node, path: FieldPath) -> Any:
        self.value_marks.setdefault(path, node.start_mark)
        if not self._enter(node, path):
            return None
        try:
            if isinstance(node, MappingNode):
                if node.tag != _MAP_TAG:
                    return self._bad_tag(node, path)
                return self._mapping(node, path)
            if isinstance(node, SequenceNode):
                if node.tag != _SEQ_TAG:
                    return self._bad_tag(node, path)
                return [self._build(item, (*path, i)) for i, item in enumerate(node.value)]
            return self._scalar(node, path)
        finally:
            self._active.discard(id(node))

    def _bad_tag(self, node: Node, path: FieldPath) -> None:
        self._add(path, f"unsupported YAML tag {node.tag}", mark=node.start_mark)

    def _scalar(self, node: Node, path: FieldPath) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as error:
            self._add(path, error.problem or str(error), mark=error.problem_mark or node.start_mark)
            return None

    def _key(self, node: Node, path: FieldPath) -> str | None:
        if not isinstance(node, ScalarNode):
            self._add(path, "a mapping key must be a plain name", mark=node.start_mark)
            return None
        key = self._scalar(node, path)
        if not isinstance(key, str):
            self._add(
                path,
                f"a mapping key must be a name, not {type(key).__name__} {node.value!r}",
                mark=node.start_mark,
            )
            return None
        return key

    def _mapping(
        self,
        node: MappingNode,
        path: FieldPath,
        *,
        nested_steps: bool = False,
    ) -> dict[str, Any]:
        """A mapping's data; with ``nested_steps``, its ``steps`` key holds a list of steps."""
        out: dict[str, Any] = {}
        first: dict[str, Mark] = {}
        merged: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.extend(self._merge_pairs(value_node, path))
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            if key in first:
                self._add(
                    (*path, key),
                    f"duplicate key `{key}` (first on line {first[key].line + 1})",
                    mark=key_node.start_mark,
                )
                continue
            first[key] = key_node.start_mark
            out[key] = self._entry(key, key_node, value_node, path, nested_steps=nested_steps)
        # YAML merge keys (``<<: *defaults``): keys written in the mapping itself win.
        for key_node, value_node in merged:
            key = self._key(key_node, path)
            if key is not None and key not in out:
                out[key] = self._entry(key, key_node, value_node, path, nested_steps=nested_steps)
        return out

    def _entry(
        self, key: str, key_node: Node, value_node: Node, path: FieldPath, *, nested_steps: bool
    ) -> Any:
        self.key_marks[(*path, key)] = key_node.start_mark
        if nested_steps and key == "steps":
            return self._steps(value_node, (*path, key))
        return self._build(value_node, (*path, key))

    def _merge_pairs(self, node: Node, path: FieldPath) -> list[tuple[Node, Node]]:
        """The pairs ``<<: node`` brings in, those that win first (YAML's merge-key rules)."""
        sources = node.value if isinstance(node, SequenceNode) else [node]
        pairs: list[tuple[Node, Node]] = []
        for source in sources:
            if not isinstance(source, MappingNode):
                self._add(path, "a merge key (`<<`) takes a mapping", mark=source.start_mark)
                continue
            if not self._enter(source, path):
                continue
            try:
                pairs.extend(pair for pair in source.value if pair[0].tag != _MERGE_TAG)
                for key_node, value_node in source.value:
                    if key_node.tag == _MERGE_TAG:
                        pairs.extend(self._merge_pairs(value_node, path))
            finally:
                self._active.discard(id(source))
        return pairs

    # -- steps ------------------------------------------------------------------------------

    def _steps(self, node: Node, path: FieldPath) -> Any:
        if not isinstance(node, SequenceNode):
            return self._build(node, path)  # msgspec says that a list was expected
        self.value_marks.setdefault(path, node.start_mark)
        return [self._step(item, (*path, i)) for i, item in enumerate(node.value)]

    def _step(self, node: Node, path: FieldPath) -> Any:
        """``{kind: params}`` as written to ``{"step": kind, **params}``."""
        self.value_marks.setdefault(path, node.start_mark)
        if not self._enter(node, path):
            return None
        try:
            return self._step_data(node, path)
        finally:
            self._active.discard(id(node))

    def _step_data(self, node: Node, path: FieldPath) -> Any:
        if not isinstance(node, MappingNode) or len(node.value) != 1:
            self._bad_step(node, path)
            return None
        key_node, value_node = node.value[0]
        kind = self._key(key_node, path)
        if kind is None:
            return None
        if kind not in _KINDS:
            self._add(
                path, f"unknown step kind `{kind}`", closest(kind, _KINDS), mark=key_node.start_mark
            )
            return None
        self.value_marks[path] = key_node.start_mark
        params = self._params(kind, value_node, path)
        if params is None:
            return None
        if "step" in params:
            fields = _field_names(msgspec.inspect.type_info(step_kinds()[kind]))
            self._add((*path, "step"), "unknown field `step`", closest("step", fields))
            return None
        self.key_marks[(*path, "step")] = key_node.start_mark
        return {"step": kind, **params}

    def _params(self, kind: str, node: Node, path: FieldPath) -> dict[str, Any] | None:
        if isinstance(node, ScalarNode) and node.tag == _NULL_TAG:
            return {}
        if isinstance(node, MappingNode) and node.tag == _MAP_TAG:
            return self._mapping(node, path, nested_steps=kind in _NESTED_STEPS)
        if isinstance(node, ScalarNode) and kind in SHORTHANDS:
            field = SHORTHANDS[kind]
            self.key_marks[(*path, field)] = node.start_mark
            return {field: self._build(node, (*path, field))}
        if isinstance(node, ScalarNode):
            message = f"`{kind}` has no shorthand: write its fields as a mapping under `{kind}:`"
        else:
            message = f"the fields of a `{kind}` step are a mapping, like `{kind}: {{...}}`"
        self._add(path, message, mark=node.start_mark)
        return None

    def _bad_step(self, node: Node, path: FieldPath) -> None:
        example = "a step is a mapping with one key, its kind, like `- wait: 5s`"
        if isinstance(node, MappingNode) and node.value:
            first, second = node.value[0][0], node.value[1][0]
            first_name, second_name = first.value, second.value
            self._add(
                path,
                f"a step has one key, its kind, and this one also has `{second_name}`: start"
                f" another step with `- `, or indent the fields under `{first_name}:`",
                mark=second.start_mark,
            )
        elif isinstance(node, ScalarNode) and isinstance(node.value, str) and node.value:
            suggestion = f"{node.value}:" if node.value in _KINDS else None
            near = closest(node.value, _KINDS)
            if suggestion is None and near is not None:
                suggestion = f"{near}:"
            self._add(path, example, suggestion, mark=node.start_mark)
        else:
            self._add(path, example, mark=node.start_mark)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _render(path: FieldPath) -> str:
    out = ""
    for element in path:
        out += f"[{element}]" if isinstance(element, int) else (f".{element}" if out else element)
    return out


def _syntax_problem(filename: str, error: yaml.MarkedYAMLError, text: str) -> Problem:
    mark = error.problem_mark or error.context_mark
    message = f"YAML syntax error: {error.problem}" if error.problem else "YAML syntax error"
    if error.context and error.context_mark is not None and error.context_mark is not mark:
        context_mark = error.context_mark
        message += f" ({error.context} at line {context_mark.line + 1})"
    if any(_char_at(text, m) == ">" for m in (error.problem_mark, error.context_mark)):
        message += '; a threshold that starts with `>` must be quoted, like ">= 0.95"'
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
    return Problem(filename, line, column, "", message)


def _char_at(text: str, mark: Mark | None) -> str:
    if mark is None:
        return ""
    lines = text.splitlines()
    line = lines[mark.line] if mark.line < len(lines) else ""
    return line[mark.column : mark.column + 1]


def _unwrap(info: msgspec.inspect.Type, value: object) -> msgspec.inspect.Type:
    """The type that applies to ``value``: the member of a union it belongs to, not ``None``."""
    while isinstance(info, msgspec.inspect.UnionType):
        members = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        if isinstance(value, dict):
            for member in members:
                if isinstance(member, msgspec.inspect.StructType) and (
                    member.tag_field is None or value.get(member.tag_field) == member.tag
                ):
                    return member
        if len(members) != 1:
            return info
        info = members[0]
    return info


def _type_at(path: FieldPath, data: object) -> msgspec.inspect.Type | None:
    info: msgspec.inspect.Type = msgspec.inspect.type_info(Scenario)
    value = data
    for element in path:
        info = _unwrap(info, value)
        if isinstance(info, msgspec.inspect.StructType) and isinstance(element, str):
            field = next((f for f in info.fields if f.name == element), None)
            if field is None:
                return None
            info = field.type
        elif isinstance(info, msgspec.inspect.VarTupleType) and isinstance(element, int):
            info = info.item_type
        elif isinstance(info, msgspec.inspect.TupleType) and isinstance(element, int):
            info = info.item_types[element]
        else:
            return None
        value = _value_at(value, (element,))
    return _unwrap(info, value)


def _value_at(data: object, path: FieldPath) -> object:
    value = data
    for element in path:
        if isinstance(value, dict) and isinstance(element, str):
            value = value.get(element)
        elif isinstance(value, list) and isinstance(element, int) and element < len(value):
            value = value[element]
        else:
            return None
    return value


def _field_names(info: msgspec.inspect.Type | None) -> list[str]:
    if isinstance(info, msgspec.inspect.StructType):
        return [f.name for f in info.fields if f.name != info.tag_field]
    return []


def _literal_values(info: msgspec.inspect.Type | None) -> list[str]:
    if isinstance(info, msgspec.inspect.LiteralType):
        return [str(v) for v in info.values]
    return []
