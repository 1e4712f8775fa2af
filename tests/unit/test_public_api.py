"""Public names of the packages (httpx style: __all__ is complete and importable)."""

from __future__ import annotations

import pkgutil

import reference_server.protocol as protocol


def test_protocol_all_is_complete() -> None:
    """Every public name the protocol package imports is listed in __all__, and exists."""
    submodules = {m.name for m in pkgutil.iter_modules(protocol.__path__)}
    public = {name for name in vars(protocol) if not name.startswith("_")} - submodules
    assert sorted(public) == sorted(set(protocol.__all__) - {"codec"})
    assert all(hasattr(protocol, name) for name in protocol.__all__)
