"""The reference server's chat agent: deterministic, pure, and small.

``respond(context, message_id, text)`` reads one user message and returns the reply, the tool
calls it made, and the new context. The same context and input always give the same output: no
randomness, no clock, no I/O. The input context is never mutated; the new one holds new dicts.

Grammar (keywords are case-insensitive; ``K``, ``V``, ``X`` keep their case)::

    message  = clause { separator clause }
    separator = ";" | newline | ( "." | "!" | "?" | "," )+ followed by whitespace or the end
    clause   = { filler } command          (a clause matching no command is ignored)
    filler   = "hi" | "hello" | "hey" | "ok" | "okay" | "please" | "so" | "and" | "also"
             | "then" | "now" | "can you" | "could you" | "tell me"
    command  = "reset" [ "the" ] "workflow" ...           workflow back to step 0
             | ( "what do you remember" | "recall" ) ...   list memory, sorted by key
             | "my name is" V                             memory["name"] = V
             | "remember" [ "that" ] K "is" V             memory[k] = V  (K up to the first " is ")
             | "set preference" W "to" V                  preferences[w] = V
             | [ "set" ] "preference" W "=" V             preferences[w] = V
             | "I prefer" V                               preferences["style"] = V
             | "set" NAME "=" N | "let" NAME "be" N       variables[NAME] = value(N)
             | ( "calculate" | "compute" ) EXPR           calculator tool call
             | "what is" EXPR                             calculator tool call, only when EXPR
                                                          has a digit, one of + - * / % ( ),
                                                          or is the name of a set variable
    W        = words of letters, digits, "_" or "-", separated by spaces
    NAME     = [A-Za-z_][A-Za-z0-9_]*                     (case-sensitive)

Each clause, with runs of whitespace collapsed to one space, runs the first command that matches
it, in the order above; a message may hold several clauses, applied left to right. Memory and
preference keys (``k``, ``w``) are lower-cased; values are strings. ``value(N)`` is an int
(``[+-]?digits``), else a finite float, else ``true``/``false`` as a bool, else the string.

``EXPR`` holds numbers, names of set variables, ``+ - * / // % **``, unary ``+ -`` and
parentheses. It is parsed with :mod:`ast` and only those node types are evaluated; anything else
(calls, attributes, strings, ...) is an error. Expressions over 200 characters, exponents whose
magnitude exceeds 100, and integer results over 4096 bits are refused before they are computed.
Each evaluation is a tool call ``calculator`` with ``{"expression": EXPR}``, id
``{message_id}-t{n}`` (n counts this turn's calls from 1); its result is the value as a string or
``"error: ..."``. Nothing raises.

Workflow: every message advances one step of :data:`WORKFLOW_STEPS` and adds the step it leaves
to ``completed``, until ``done``, where it stays. A message with ``reset workflow`` instead puts it
back at step 0 with nothing completed.

Reply: one sentence per recognised clause, in order (``"Message received."`` if none), then
``"Workflow step: <name>."``; a reply under nine words gets a fixed closing phrase. It is streamed
as chunks of four words each (spaces kept), so there are always at least three chunks.
"""

from __future__ import annotations

import ast
import functools
import math
import re
import warnings
from collections.abc import Callable
from typing import Any

import msgspec

from reference_server.protocol.messages import AgentContextData, ToolCallRecord, WorkflowState

__all__ = [
    "WORKFLOW_NAME",
    "WORKFLOW_STEPS",
    "AgentTurn",
    "new_context",
    "respond",
]

WORKFLOW_NAME = "assist"
WORKFLOW_STEPS: tuple[str, ...] = ("greet", "understand", "plan", "act", "review", "done")

CALCULATOR = "calculator"
MAX_EXPRESSION_CHARS = 200
MAX_EXPONENT = 100
MAX_RESULT_BITS = 4096
WORDS_PER_CHUNK = 4
MIN_REPLY_WORDS = 9  # 4 + 4 + 1: the fewest words that make three chunks
MIN_CHUNKS = 3
MAX_REMEMBERED_REPLY = 512
"""Replies up to this many characters have their chunks remembered (1,024 of them at most)."""
CLOSING_PHRASE = "Let me know what you would like next."
NOTHING_RECOGNISED = "Message received."


class AgentTurn(msgspec.Struct, frozen=True):
    """What the agent did with one user message."""

    chunks: tuple[str, ...]
    """The reply split into at least three chunks; ``"".join(chunks) == reply``."""
    reply: str
    tool_calls: tuple[ToolCallRecord, ...]
    """Calls made during this turn (also appended to ``context.tool_calls``)."""
    context: AgentContextData
    """The new context after this turn."""


def new_context() -> AgentContextData:
    """An empty context: no memory, preferences, variables or tool calls; workflow at step 0."""
    return AgentContextData(
        memory={},
        preferences={},
        variables={},
        workflow=WorkflowState(name=WORKFLOW_NAME, step=0, completed=()),
        tool_calls=(),
    )


# --- parsing ------------------------------------------------------------------------------

_FLAGS = re.IGNORECASE
# Every pattern is linear on its input: a punctuation run is split from its start only, clauses
# have their whitespace collapsed, and no pattern nests ambiguous repetitions.
_SEPARATOR = re.compile(r"(?<![.!?,])[.!?,]+(?=\s|$)|[;\n]")
_FILLER = re.compile(
    r"(?:(?:hi|hello|hey|ok|okay|please|so|and|also|then|now|can\s+you|could\s+you|tell\s+me)"
    r"(?:\s+|$))+",
    _FLAGS,
)
_VALUE = r"(?P<value>\S.*)"
_WORDS_KEY = r"(?P<key>[\w-]+(?:\s+[\w-]+)*?)"
_IDENT = r"(?P<name>(?-i:[A-Za-z_][A-Za-z0-9_]*))"

_RESET = re.compile(r"reset\s+(?:the\s+)?workflow\b", _FLAGS)
_RECALL = re.compile(r"(?:what\s+do\s+you\s+remember|recall)\b", _FLAGS)
_NAME = re.compile(r"my\s+name\s+is\s+" + _VALUE, _FLAGS)
_REMEMBER = re.compile(r"remember\s+(?:that\s+)?(?P<key>\S.*?)\s+is\s+" + _VALUE, _FLAGS)
_SET_PREFERENCE = re.compile(r"set\s+preference\s+" + _WORDS_KEY + r"\s+to\s+" + _VALUE, _FLAGS)
_PREFERENCE_EQ = re.compile(r"(?:set\s+)?preference\s+" + _WORDS_KEY + r"\s*=\s*" + _VALUE, _FLAGS)
_PREFER = re.compile(r"i\s+prefer\s+" + _VALUE, _FLAGS)
_SET_VARIABLE = re.compile(r"set\s+" + _IDENT + r"\s*=\s*" + _VALUE, _FLAGS)
_LET_VARIABLE = re.compile(r"let\s+" + _IDENT + r"\s+be\s+" + _VALUE, _FLAGS)
_CALCULATE = re.compile(r"(?:calculate|compute)\s+(?P<expr>\S.*)", _FLAGS)
_WHAT_IS = re.compile(r"what\s+is\s+(?P<expr>\S.*)", _FLAGS)
_ARITHMETIC_HINT = re.compile(r"[0-9+\-*/%()]")
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_WORD = r"\s*\S+\s*"
"""A word with the whitespace around it (leading only at the start of the text)."""
_CHUNK = re.compile(f"(?:{_WORD}){{1,{WORDS_PER_CHUNK}}}")


def _key(raw: str) -> str:
    return " ".join(raw.lower().split())


def _parse_value(raw: str) -> int | float | bool | str:
    text = raw.strip()
    if _INT.fullmatch(text):
        try:
            return int(text)
        except ValueError:  # more digits than int() accepts from a string
            pass
    if _FLOAT.fullmatch(text):
        number = float(text)
        if math.isfinite(number):
            return number
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return text


def _format_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


# --- the calculator -----------------------------------------------------------------------


class _CalcError(Exception):
    """An expression the calculator refuses or cannot evaluate; the text is the result."""


_Number = int | float

_BINARY: dict[type[ast.operator], Callable[[_Number, _Number], _Number]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: a // b,
    ast.Mod: lambda a, b: a % b,
}


def _power(base: _Number, exponent: _Number) -> _Number:
    if abs(exponent) > MAX_EXPONENT:
        raise _CalcError("error: exponent too large")
    if (
        isinstance(base, int)
        and isinstance(exponent, int)
        and exponent > 0
        and max(abs(base).bit_length(), 1) * exponent > MAX_RESULT_BITS
    ):
        raise _CalcError("error: result too large")
    result: object = base**exponent
    if isinstance(result, complex):
        raise _CalcError("error: complex result")
    assert isinstance(result, int | float)
    return result


def _evaluate(node: ast.AST, variables: dict[str, Any]) -> _Number:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, variables)
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        raise _CalcError("error: unsupported constant")
    if isinstance(node, ast.Name):
        if node.id not in variables:
            raise _CalcError(f"error: unknown name '{node.id}'")
        found = variables[node.id]
        if isinstance(found, int | float):
            return found
        raise _CalcError(f"error: '{node.id}' is not a number")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd | ast.USub):
        operand = _evaluate(node.operand, variables)
        return +operand if isinstance(node.op, ast.UAdd) else -operand
    if isinstance(node, ast.BinOp):
        left = _evaluate(node.left, variables)
        right = _evaluate(node.right, variables)
        if isinstance(node.op, ast.Pow):
            return _power(left, right)
        operation = _BINARY.get(type(node.op))
        if operation is None:
            raise _CalcError(f"error: unsupported operator {type(node.op).__name__}")
        if (
            isinstance(node.op, ast.Mult)
            and isinstance(left, int)
            and isinstance(right, int)
            and abs(left).bit_length() + abs(right).bit_length() > MAX_RESULT_BITS
        ):
            raise _CalcError("error: result too large")
        return operation(left, right)
    raise _CalcError(f"error: unsupported syntax {type(node).__name__}")


def _calculate(expression: str, variables: dict[str, Any]) -> str:
    """The calculator tool: the value of ``expression`` as a string, or ``"error: ..."``."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        return f"error: expression too long (over {MAX_EXPRESSION_CHARS} characters)"
    try:
        # The parser may warn (bad escapes, "1if"); the outcome must not depend on the
        # process's warning filters, so warnings are silenced here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(expression, mode="eval")
        value = _evaluate(tree, variables)
    except _CalcError as error:
        return str(error)
    except ZeroDivisionError:
        return "error: division by zero"
    except OverflowError:
        return "error: overflow"
    except (SyntaxError, ValueError):
        return "error: invalid expression"
    except (RecursionError, MemoryError):
        return "error: expression too complex"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "error: overflow"
    if value.bit_length() > MAX_RESULT_BITS:
        return "error: result too large"
    return str(value)


# --- the turn -----------------------------------------------------------------------------


def _wants_calculator(expression: str, variables: dict[str, Any]) -> bool:
    return _ARITHMETIC_HINT.search(expression) is not None or expression in variables


def _chunked(reply: str) -> tuple[str, tuple[str, ...]]:
    """The reply, with the closing phrase if it is shorter than ``MIN_REPLY_WORDS``, and its
    chunks. Replies repeat: once the workflow is done, every message without a command gets
    "Message received. Workflow step: done.", so short replies are remembered (an LRU)."""
    if len(reply) <= MAX_REMEMBERED_REPLY:
        return _chunked_remembered(reply)
    return _split(reply)


def _split(reply: str) -> tuple[str, tuple[str, ...]]:
    # _CHUNK matches up to WORDS_PER_CHUNK consecutive _WORD matches at once, so one findall
    # gives the words joined four by four; a reply has at least nine words exactly when it
    # has at least three chunks.
    chunks = _CHUNK.findall(reply)
    if len(chunks) >= MIN_CHUNKS:
        return reply, tuple(chunks)
    padded = f"{reply} {CLOSING_PHRASE}"
    return padded, tuple(_CHUNK.findall(padded))


_chunked_remembered = functools.lru_cache(maxsize=1024)(_split)


def respond(context: AgentContextData, message_id: str, text: str) -> AgentTurn:
    """Answer one user message; pure: the same arguments always give an equal turn."""
    memory = dict(context.memory)
    preferences = dict(context.preferences)
    variables = dict(context.variables)
    calls: list[ToolCallRecord] = []
    sentences: list[str] = []
    reset = False

    for raw_clause in _SEPARATOR.split(text):
        clause = " ".join(raw_clause.split())
        filler = _FILLER.match(clause)
        if filler is not None:
            clause = clause[filler.end() :]
        if not clause:
            continue
        if _RESET.match(clause):
            reset = True
            sentences.append("Workflow reset.")
        elif _RECALL.match(clause):
            if memory:
                items = ", ".join(f"{key} is {memory[key]}" for key in sorted(memory))
                sentences.append(f"I remember: {items}.")
            else:
                sentences.append("I don't remember anything yet.")
        elif match := _NAME.match(clause):
            memory["name"] = match["value"].strip()
            sentences.append(f"Noted, {memory['name']}.")
        elif match := _REMEMBER.match(clause):
            key, value = _key(match["key"]), match["value"].strip()
            memory[key] = value
            sentences.append(f"I'll remember that {key} is {value}.")
        elif (match := _SET_PREFERENCE.match(clause)) or (match := _PREFERENCE_EQ.match(clause)):
            key, value = _key(match["key"]), match["value"].strip()
            preferences[key] = value
            sentences.append(f"Preference {key} set to {value}.")
        elif match := _PREFER.match(clause):
            preferences["style"] = match["value"].strip()
            sentences.append(f"Noted your preferred style: {preferences['style']}.")
        elif (match := _SET_VARIABLE.match(clause)) or (match := _LET_VARIABLE.match(clause)):
            variables[match["name"]] = _parse_value(match["value"])
            sentences.append(f"Set {match['name']} to {_format_value(variables[match['name']])}.")
        elif (match := _CALCULATE.match(clause)) or (
            (match := _WHAT_IS.match(clause)) and _wants_calculator(match["expr"], variables)
        ):
            expression = match["expr"].strip()
            result = _calculate(expression, variables)
            calls.append(
                ToolCallRecord(
                    call_id=f"{message_id}-t{len(calls) + 1}",
                    tool=CALCULATOR,
                    arguments={"expression": expression},
                    result=result,
                )
            )
            if result.startswith("error:"):
                sentences.append(f"I could not calculate {expression} ({result}).")
            else:
                sentences.append(f"The result of {expression} is {result}.")

    workflow = _next_workflow(context.workflow, reset)
    sentences.append(f"Workflow step: {WORKFLOW_STEPS[workflow.step]}.")
    if len(sentences) == 1:
        sentences.insert(0, NOTHING_RECOGNISED)
    reply, chunks = _chunked(" ".join(sentences))

    turn_calls = tuple(calls)
    return AgentTurn(
        chunks=chunks,
        reply=reply,
        tool_calls=turn_calls,
        context=AgentContextData(
            memory=memory,
            preferences=preferences,
            variables=variables,
            workflow=workflow,
            tool_calls=(*context.tool_calls, *turn_calls),
        ),
    )


def _next_workflow(current: WorkflowState, reset: bool) -> WorkflowState:
    if reset:
        return WorkflowState(name=WORKFLOW_NAME, step=0, completed=())
    last = len(WORKFLOW_STEPS) - 1
    step = min(max(current.step, 0), last)  # tolerate a context from elsewhere
    if step == last:
        return WorkflowState(name=WORKFLOW_NAME, step=step, completed=current.completed)
    return WorkflowState(
        name=WORKFLOW_NAME,
        step=step + 1,
        completed=(*current.completed, WORKFLOW_STEPS[step]),
    )
