"""Targets: the server a run drives, and what it can do besides speaking its protocol."""

from harness.targets.base import TARGET_CAPABILITIES, Target, TargetError, http_base, upstream
from harness.targets.embedded import PLANTED_FAULTS, EmbeddedTarget
from harness.targets.external import ExternalTarget

__all__ = [
    "PLANTED_FAULTS",
    "TARGET_CAPABILITIES",
    "EmbeddedTarget",
    "ExternalTarget",
    "Target",
    "TargetError",
    "http_base",
    "upstream",
]
