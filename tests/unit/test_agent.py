"""The reference server's deterministic chat agent (reference_server/agent.py)."""

from __future__ import annotations

import copy
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_server import agent
from reference_server.agent import (
    WORKFLOW_NAME,
    WORKFLOW_STEPS,
    AgentTurn,
    new_context,
    respond,
)
from reference_server.protocol.messages import AgentContextData, ToolCallRecord, WorkflowState


def _run(*texts: str) -> AgentTurn:
    """Send ``texts`` in order from a new context; the last turn."""
    context = new_context()
    turn: AgentTurn | None = None
    for index, text in enumerate(texts):
        turn = respond(context, f"m{index}", text)
        context = turn.context
    assert turn is not None
    return turn


def _result(text: str, *before: str) -> str:
    """The result of the only tool call the last of ``before`` + ``text`` made."""
    turn = _run(*before, text)
    assert 1 == len(turn.tool_calls)
    return turn.tool_calls[0].result


def test_new_context_is_empty_at_step_zero() -> None:
    """A new context has no memory, preferences, variables or tool calls, at workflow step 0."""
    assert (
        AgentContextData(
            memory={},
            preferences={},
            variables={},
            workflow=WorkflowState(name=WORKFLOW_NAME, step=0, completed=()),
            tool_calls=(),
        )
        == new_context()
    )


def test_my_name_is_sets_the_name_in_memory() -> None:
    """ "my name is X" stores X under memory["name"], keeping its case."""
    turn = _run("Hi, My Name Is Ada Lovelace!")
    assert {"name": "Ada Lovelace"} == turn.context.memory
    assert turn.reply.startswith("Noted, Ada Lovelace.")


@pytest.mark.parametrize(
    "text", ["remember colour is blue", "Remember that Colour is blue", "REMEMBER colour IS blue"]
)
def test_remember_stores_a_key_and_value(text: str) -> None:
    """ "remember [that] K is V" stores memory[k] = V with the key lower-cased."""
    assert {"colour": "blue"} == _run(text).context.memory


def test_i_prefer_sets_the_style_preference() -> None:
    """ "I prefer X" stores X under preferences["style"]."""
    assert {"style": "short answers"} == _run("I prefer short answers").context.preferences


@pytest.mark.parametrize(
    "text",
    ["set preference tone to formal", "preference tone = formal", "Set Preference Tone = formal"],
)
def test_preference_forms_set_a_preference(text: str) -> None:
    """ "set preference K to V" and "preference K = V" store preferences[k] = V."""
    assert {"tone": "formal"} == _run(text).context.preferences


@pytest.mark.parametrize(
    ("text", "name", "value"),
    [
        ("set x = 4", "x", 4),
        ("let rate be -2.5", "rate", -2.5),
        ("set big = 1e3", "big", 1000.0),
        ("SET flag = True", "flag", True),
        ("let off be false", "off", False),
        ("set who = Ada Lovelace", "who", "Ada Lovelace"),
        ("set Name_2 = 7", "Name_2", 7),
    ],
)
def test_variables_parse_int_float_bool_else_string(
    text: str, name: str, value: int | float | bool | str
) -> None:
    """ "set X = N" / "let X be N" store N as an int, else a float, else a bool, else a string."""
    variables = _run(text).context.variables
    assert {name: value} == variables
    assert type(value) is type(variables[name])


def test_one_message_can_match_several_rules() -> None:
    """Clauses of one message are applied in order, and the reply covers each of them."""
    turn = _run("My name is Ada, set x = 3; what is x + 2?")
    assert {"name": "Ada"} == turn.context.memory
    assert {"x": 3} == turn.context.variables
    assert (
        "Noted, Ada. Set x to 3. The result of x + 2 is 5. Workflow step: understand." == turn.reply
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("what is 2 + 3", "5"),
        ("calculate 10 / 4", "2.5"),
        ("compute 7 // 2", "3"),
        ("what is 7 % 3", "1"),
        ("what is 2 ** 10", "1024"),
        ("calculate -(1 + 2) * +3", "-9"),
        ("what is 0.1 + 0.2", "0.30000000000000004"),
        ("calculate 1 / 0", "error: division by zero"),
        ("calculate 5 % 0", "error: division by zero"),
        ("calculate 2 +", "error: invalid expression"),
        ("calculate y + 1", "error: unknown name 'y'"),
        ("what is (-8) ** 0.5", "error: complex result"),
    ],
)
def test_calculator_results(text: str, expected: str) -> None:
    """Arithmetic is a calculator tool call whose result is the value, or an error text."""
    assert expected == _result(text)


def test_calculator_tool_call_record() -> None:
    """Each calculation is recorded with its id, tool name, expression and result."""
    turn = _run("what is 1 + 1, calculate 2 * 3")
    expected = (
        ToolCallRecord(
            call_id="m0-t1", tool="calculator", arguments={"expression": "1 + 1"}, result="2"
        ),
        ToolCallRecord(
            call_id="m0-t2", tool="calculator", arguments={"expression": "2 * 3"}, result="6"
        ),
    )
    assert expected == turn.tool_calls
    assert expected == turn.context.tool_calls


def test_arithmetic_uses_variables() -> None:
    """Names in an expression resolve to variables set in earlier messages or clauses."""
    assert "25.0" == _result("calculate x * y ** 2", "set x = 4", "let y be 2.5")
    assert "2" == _result("what is flag + 1", "set flag = true")
    assert "error: 'who' is not a number" == _result("what is who * 2", "set who = Ada")


def test_what_is_without_arithmetic_is_not_a_calculation() -> None:
    """ "what is" with no digit, operator or known variable makes no tool call."""
    turn = _run("what is the weather")
    assert () == turn.tool_calls
    assert turn.reply.startswith("Message received. Workflow step: understand.")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("__import__('os')", "error: unsupported syntax Call"),
        ("__import__('os').system('true')", "error: unsupported syntax Call"),
        ("(1).real", "error: unsupported syntax Attribute"),
        ("x.__class__", "error: unsupported syntax Attribute"),
        ("abs(-1)", "error: unsupported syntax Call"),
        ("'a' * 3", "error: unsupported constant"),
        ("[1,2]", "error: unsupported syntax List"),
        ("lambda: 1", "error: unsupported syntax Lambda"),
        ("1 if 1 else 2", "error: unsupported syntax IfExp"),
        ("~1", "error: unsupported syntax UnaryOp"),
        ("1 << 1000", "error: unsupported operator LShift"),
        ("2 ** 101", "error: exponent too large"),
        ("9 ** 99 ** 99", "error: exponent too large"),
        ("((9 ** 99) ** 99) ** 99", "error: result too large"),
        ("1e308 * 10", "error: overflow"),
        ("1" + "+1" * 100, "error: expression too long (over 200 characters)"),
    ],
)
def test_unsafe_expressions_are_rejected_without_raising(expression: str, expected: str) -> None:
    """Calls, attributes, other syntax, huge exponents or results and long input give errors."""
    assert expected == _result(f"calculate {expression}", "set x = 1")


@pytest.mark.parametrize("text", ["what do you remember", "Recall", "please recall everything"])
def test_recall_lists_memory_sorted_by_key(text: str) -> None:
    """A recall lists memory items sorted by key and makes no tool call."""
    turn = _run("remember zebra is striped", "my name is Ada", text)
    assert () == turn.tool_calls
    assert turn.reply.startswith("I remember: name is Ada, zebra is striped.")


def test_recall_with_empty_memory() -> None:
    """A recall with nothing in memory says so."""
    assert _run("what do you remember?").reply.startswith("I don't remember anything yet.")


def test_workflow_advances_one_step_per_message_and_stops_at_done() -> None:
    """Each message advances the workflow one step, recording completed steps, until done."""
    context = new_context()
    steps = []
    for index in range(len(WORKFLOW_STEPS) + 3):
        turn = respond(context, f"m{index}", "hello")
        context = turn.context
        steps.append(context.workflow.step)
        assert f"Workflow step: {WORKFLOW_STEPS[context.workflow.step]}." in turn.reply
    assert [1, 2, 3, 4, 5, 5, 5, 5, 5] == steps
    assert (
        WorkflowState(name=WORKFLOW_NAME, step=5, completed=WORKFLOW_STEPS[:-1]) == context.workflow
    )


def test_reset_workflow_returns_to_step_zero() -> None:
    """ "reset workflow" puts the workflow at step 0 with nothing completed."""
    turn = _run("hello", "hello", "hello", "please reset the workflow")
    assert WorkflowState(name=WORKFLOW_NAME, step=0, completed=()) == turn.context.workflow
    assert "Workflow step: greet." in turn.reply
    assert 1 == _run("hello", "Reset workflow", "hello").context.workflow.step


def test_tool_calls_accumulate_across_turns() -> None:
    """The context keeps every tool call of the conversation, in order."""
    turn = _run("what is 1 + 1", "hello", "compute 2 * 2")
    assert ("m0-t1", "m2-t1") == tuple(call.call_id for call in turn.context.tool_calls)


@pytest.mark.parametrize("text", ["", "hi", "what is 2 + 3", "x " * 50])
def test_chunks_join_to_the_reply_and_are_at_least_three(text: str) -> None:
    """The reply is split into at least three chunks that join back to it exactly."""
    turn = _run(text)
    assert turn.reply == "".join(turn.chunks)
    assert len(turn.chunks) >= 3


def test_input_context_is_not_mutated() -> None:
    """respond() leaves the input context, including its dicts, unchanged."""
    context = _run("my name is Ada, set x = 1, I prefer brief, what is x + 1").context
    snapshot = copy.deepcopy(context)
    turn = respond(context, "m9", "my name is Bo, set x = 2, preference tone = dry, what is 1 + 1")
    assert snapshot == context
    assert turn.context.memory is not context.memory
    assert turn.context.preferences is not context.preferences
    assert turn.context.variables is not context.variables


_FRAGMENTS = st.sampled_from(
    [
        "my name is Ada",
        "remember that k is v",
        "I prefer terse",
        "set preference tone to dry",
        "set x = 3",
        "let y be 0.5",
        "what is x * y + 2",
        "calculate 1 / 0",
        "compute 2 ** 200",
        "what do you remember",
        "reset workflow",
        ", ",
        ". ",
        "; ",
    ]
)
_TEXTS = st.one_of(st.text(), st.lists(st.one_of(_FRAGMENTS, st.text(max_size=8))).map("".join))


@settings(max_examples=200)
@given(text=_TEXTS, message_id=st.text(max_size=8), warmup=st.lists(_FRAGMENTS, max_size=3))
def test_respond_is_deterministic(text: str, message_id: str, warmup: list[str]) -> None:
    """The same context and input always give an equal turn."""
    context = _run(*warmup).context if warmup else new_context()
    assert respond(context, message_id, text) == respond(context, message_id, text)


@settings(max_examples=200)
@given(text=_TEXTS)
def test_respond_never_raises_and_chunks_hold(text: str) -> None:
    """Any text gets a reply of at least three chunks that join back to it."""
    turn = respond(_run("set x = 2").context, "m", text)
    assert turn.reply == "".join(turn.chunks)
    assert len(turn.chunks) >= 3
    assert f"Workflow step: {WORKFLOW_STEPS[turn.context.workflow.step]}." in turn.reply


@given(st.text(alphabet=st.sampled_from("ab .,\n\t:\u00a0"), max_size=60))
@settings(max_examples=500)
def test_chunked_is_the_words_four_by_four_of_the_padded_reply(reply: str) -> None:
    """``_chunked``'s one regex gives what the module's rule says: the words (``_WORD``) of
    the reply, with the closing phrase when it has fewer than nine, joined four by four."""
    words = re.findall(agent._WORD, reply)
    expected = reply
    if len(words) < agent.MIN_REPLY_WORDS:
        expected = f"{reply} {agent.CLOSING_PHRASE}"
        words = re.findall(agent._WORD, expected)
    four = agent.WORDS_PER_CHUNK
    chunks = tuple("".join(words[i : i + four]) for i in range(0, len(words), four))
    assert agent._chunked(reply) == (expected, chunks)
