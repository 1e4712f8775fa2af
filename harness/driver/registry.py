"""Finding a driver by name: the built-in ones, and plugins through an entry-point group.

A team's own driver is a pip-installable package that declares, in its ``pyproject.toml``::

    [project.entry-points."ws_continuity.drivers"]
    myproto = "myproto_driver:factory"

where ``factory`` is a ``DriverFactory``: a callable ``(ClientConfig, observe) -> Driver`` with
an ``info: DriverInfo`` attribute. ``harness run --driver myproto`` then uses it.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Final

from harness.driver.base import DriverFactory, DriverInfo

GROUP: Final = "ws_continuity.drivers"

_BUILTIN: Final[dict[str, str]] = {
    "reference": "harness.driver.reference:factory",
    "memory": "harness.driver.memory:factory",
}


class DriverNotFoundError(LookupError):
    """No driver of that name; the message lists the ones there are."""


def available() -> list[str]:
    """Every driver name this installation knows, sorted."""
    names = set(_BUILTIN)
    names.update(ep.name for ep in entry_points(group=GROUP))
    return sorted(names)


def load(name: str) -> DriverFactory:
    """The factory of driver ``name``; a plugin of that name wins over a built-in one."""
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if found:
        factory = found[0].load()
    elif name in _BUILTIN:
        module, _, attribute = _BUILTIN[name].partition(":")
        factory = getattr(__import__(module, fromlist=[attribute]), attribute)
    else:
        raise DriverNotFoundError(
            f"no driver named {name!r}; installed: {', '.join(available())} "
            f"(a plugin registers one in the {GROUP!r} entry-point group)"
        )
    info = getattr(factory, "info", None)
    if not isinstance(info, DriverInfo):
        raise DriverNotFoundError(f"driver {name!r} has no `info: DriverInfo` attribute")
    return factory  # type: ignore[no-any-return]


def planted_faults(name: str) -> tuple[str, ...]:
    """The faults driver ``name``'s embedded target can plant (none when it has no catalogue)."""
    embedded = getattr(load(name), "embedded", None)
    return tuple(getattr(embedded, "planted_faults", ()))


def describe_fault(name: str, fault: str) -> str:
    """What planted fault ``fault`` of driver ``name``'s embedded target breaks, in words; empty
    when the target does not say."""
    describe = getattr(getattr(load(name), "embedded", None), "describe_fault", None)
    return str(describe(fault)) if callable(describe) else ""
