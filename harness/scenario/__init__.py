"""The scenario language: YAML files, their typed model, the loader and its errors.

``load("my_scenario.yaml")`` returns a ``Scenario`` or raises ``ScenarioError``, whose
problems each name a file, line, column and field. The language is described in
docs/scenarios.md.
"""

from harness.scenario.crosscheck import Issue, cross_check
from harness.scenario.durations import (
    Duration,
    Threshold,
    format_duration,
    parse_duration,
    parse_threshold,
)
from harness.scenario.loader import SHORTHANDS, load, load_files, load_many, load_text
from harness.scenario.model import (
    TOXIC_ATTRIBUTES,
    ChangeIp,
    Chat,
    ClientSpec,
    Connect,
    ConstraintError,
    ContextExpect,
    DeliveryExpect,
    Drop,
    Expect,
    Fault,
    Heal,
    HistoryExpect,
    LatencyExpect,
    MetricExpect,
    Once,
    Parallel,
    ReconnectFresh,
    Repeat,
    Resume,
    ResumeExpect,
    Scenario,
    Send,
    Snapshot,
    Step,
    Wait,
    iter_steps,
    step_kinds,
)
from harness.scenario.problems import Problem, ScenarioError
from harness.scenario.schema import json_schema

__all__ = [
    "SHORTHANDS",
    "TOXIC_ATTRIBUTES",
    "ChangeIp",
    "Chat",
    "ClientSpec",
    "Connect",
    "ConstraintError",
    "ContextExpect",
    "DeliveryExpect",
    "Drop",
    "Duration",
    "Expect",
    "Fault",
    "Heal",
    "HistoryExpect",
    "Issue",
    "LatencyExpect",
    "MetricExpect",
    "Once",
    "Parallel",
    "Problem",
    "ReconnectFresh",
    "Repeat",
    "Resume",
    "ResumeExpect",
    "Scenario",
    "ScenarioError",
    "Send",
    "Snapshot",
    "Step",
    "Threshold",
    "Wait",
    "cross_check",
    "format_duration",
    "iter_steps",
    "json_schema",
    "load",
    "load_files",
    "load_many",
    "load_text",
    "parse_duration",
    "parse_threshold",
    "step_kinds",
]
