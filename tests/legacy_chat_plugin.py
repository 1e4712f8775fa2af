"""The example driver plugin (examples/legacy_chat_driver), for the tests that use it.

It is a package of its own, installed into the venv by ``scripts/setup`` (``pip install
--no-deps -e examples/legacy_chat_driver``), exactly as a team installs its driver. Without it
the tests that need it stop at collection with this module's message, not a bare import error.
"""

from __future__ import annotations

try:
    import legacy_chat_driver
    from legacy_chat_driver import NO_REPLAY, NOT_RECOVERED, LegacyChatTarget, factory, wire
except ModuleNotFoundError as exc:  # pragma: no cover - a setup problem, said plainly
    raise ModuleNotFoundError(
        "the example driver plugin legacy_chat_driver is not installed in this Python "
        "environment: run scripts/setup (it pip-installs examples/legacy_chat_driver, "
        "editable, into .venv)"
    ) from exc

__all__ = [
    "NOT_RECOVERED",
    "NO_REPLAY",
    "LegacyChatTarget",
    "factory",
    "legacy_chat_driver",
    "wire",
]
