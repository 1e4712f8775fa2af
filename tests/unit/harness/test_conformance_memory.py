"""The driver conformance kit, run on the memory driver; and the kit catching drivers that
break the contract (a wrong outcome, an unbounded wait, a leaked exception, ...).

No sockets: each check gets a fresh ``MemoryWorld``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

import msgspec
import pytest
import pytest_asyncio

from harness.driver import registry
from harness.driver.base import ClientConfig, Driver, DriverInfo, Observe, RawAnswer, Route
from harness.driver.conformance import (
    DriverConformance,
    Kit,
    Subject,
    check_aclose,
    check_connect,
    check_history,
    check_own_disconnects,
    check_stream_across_resume,
    check_waits_are_bounded,
    position_problems,
)
from harness.driver.memory import INFO, MemoryDriver, factory
from harness.history import Closed, Delivered, Outcome, Turn
from harness.targets.memory import MemoryTarget

UNIT = 0.25
"""The kit's unit on the memory driver: nothing waits on a network here."""


class TestMemoryDriver(DriverConformance):
    """The whole kit on the memory driver, which declares every capability."""

    @pytest_asyncio.fixture
    async def driver_under_test(self) -> AsyncIterator[Subject]:
        target = MemoryTarget()
        yield Subject.of_target(factory, target, unit=UNIT)
        await target.stop()


# --- a driver that declares less: the kit never calls what it did not declare ---------------------


class _Declaring:
    """A factory of memory drivers that declare only ``capabilities``."""

    def __init__(self, capabilities: frozenset[str]) -> None:
        self.info = dataclasses.replace(INFO, name="memory-declaring", capabilities=capabilities)

    def __call__(self, config: ClientConfig, observe: Observe) -> Driver:
        return _Guarded(MemoryDriver(config, observe), self.info)


class _Guarded:
    """A memory driver behind its (smaller) declaration: using an undeclared capability fails."""

    def __init__(self, inner: MemoryDriver, info: DriverInfo) -> None:
        self.inner = inner
        self.info = info

    def _need(self, capability: str) -> None:
        if capability not in self.info.capabilities:
            raise AssertionError(f"called without declaring {capability!r}")

    @property
    def connected(self) -> bool:
        return self.inner.connected

    async def connect(self, timeout: float) -> Outcome:
        return await self.inner.connect(timeout)

    async def resume(
        self,
        timeout: float,
        *,
        token: Literal["current", "previous"] = "current",
        session_of: Driver | None = None,
    ) -> Outcome:
        self._need("resume")
        if token == "previous":
            self._need("resume_previous_token")
        if session_of is not None:
            self._need("take_over")
            session_of = session_of.inner if isinstance(session_of, _Guarded) else session_of
        return await self.inner.resume(timeout, token=token, session_of=session_of)

    async def send_message(self, text: str) -> str:
        self._need("chat")
        return await self.inner.send_message(text)

    async def await_reply(self, message_id: str, timeout: float) -> int:
        self._need("chat")
        return await self.inner.await_reply(message_id, timeout)

    async def fetch_history(self, timeout: float) -> list[Turn]:
        self._need("history")
        return await self.inner.fetch_history(timeout)

    async def fetch_context(self, timeout: float) -> Mapping[str, Any]:
        self._need("context")
        return await self.inner.fetch_context(timeout)

    async def disconnect(self, how: Literal["close", "reset"]) -> None:
        await self.inner.disconnect(how)

    async def send_raw(
        self, frame: str | bytes, timeout: float, *, until_close: bool = False
    ) -> RawAnswer:
        self._need("raw_frames")
        return await self.inner.send_raw(frame, timeout, until_close=until_close)

    def set_route(self, route: Route) -> None:
        if route.source_ip is not None:
            self._need("source_ip")
        if route.forwarded_for is not None:
            self._need("forwarded_for")
        self.inner.set_route(route)

    async def aclose(self) -> None:
        await self.inner.aclose()


class TestADriverThatDeclaresNothing(DriverConformance):
    """The kit on a driver with no capability: what needs one is skipped, never called."""

    @pytest_asyncio.fixture
    async def driver_under_test(self) -> AsyncIterator[Subject]:
        target = MemoryTarget()
        yield Subject.of_target(_Declaring(frozenset()), target, unit=UNIT)
        await target.stop()


class TestADriverThatOnlyChats(DriverConformance):
    """The kit on a driver that chats and reads history, and can do nothing else."""

    @pytest_asyncio.fixture
    async def driver_under_test(self) -> AsyncIterator[Subject]:
        target = MemoryTarget()
        declared = frozenset({"chat", "history"})
        yield Subject.of_target(_Declaring(declared), target, unit=UNIT)
        await target.stop()


def test_the_memory_driver_is_found_by_name() -> None:
    """``--driver memory`` finds the memory driver's factory."""
    assert factory is registry.load("memory")
    assert "memory" in registry.available()


# --- drivers that break the contract, and the kit catching them -----------------------------------


class _BadKind(MemoryDriver):
    async def connect(self, timeout: float) -> Outcome:
        outcome = await super().connect(timeout)
        return msgspec.structs.replace(outcome, kind="bogus")


class _Deaf(MemoryDriver):
    async def await_reply(self, message_id: str, timeout: float) -> int:
        await asyncio.sleep(timeout * 20)  # ignores its bound
        return 0


class _Leaky(MemoryDriver):
    async def fetch_history(self, timeout: float) -> list[Turn]:
        raise OSError("connection reset by peer")  # not translated at the boundary


class _Renaming(MemoryDriver):
    def _outcome(self, attached: Any, after: int) -> Outcome:
        outcome = super()._outcome(attached, after)
        return msgspec.structs.replace(outcome, stream=f"{outcome.stream}/{len(self.events)}")


class _SelfReporting(MemoryDriver):
    async def disconnect(self, how: Literal["close", "reset"]) -> None:
        await super().disconnect(how)
        self._observe(Closed(code=1000))


class _Fragile(MemoryDriver):
    closed = False

    async def aclose(self) -> None:
        if self.closed:
            raise RuntimeError("closed twice")
        self.closed = True
        await super().aclose()


class _FactoryOf:
    def __init__(self, kind: type[MemoryDriver]) -> None:
        self.kind = kind
        self.info = INFO

    def __call__(self, config: ClientConfig, observe: Observe) -> Driver:
        return self.kind(config, observe)


@contextlib.asynccontextmanager
async def kit_on(kind: type[MemoryDriver]) -> AsyncIterator[Kit]:
    """A kit over a fresh world whose clients are ``kind`` drivers."""
    target = MemoryTarget()
    kit = Kit(Subject.of_target(_FactoryOf(kind), target, unit=UNIT))
    try:
        yield kit
    finally:
        with contextlib.suppress(BaseException):
            await kit.aclose()
        await target.stop()


@pytest.mark.asyncio
async def test_the_kit_catches_an_outcome_of_no_known_kind() -> None:
    """An outcome whose kind is not an ``OutcomeKind`` fails the kit."""
    async with kit_on(_BadKind) as kit:
        with pytest.raises(pytest.fail.Exception, match="kind 'bogus' is not one of"):
            await check_connect(kit)


@pytest.mark.asyncio
async def test_the_kit_catches_a_wait_past_its_bound() -> None:
    """A call that outlives its timeout plus the grace fails the kit."""
    async with kit_on(_Deaf) as kit:
        with pytest.raises(pytest.fail.Exception, match="had not returned after"):
            await check_waits_are_bounded(kit)


@pytest.mark.asyncio
async def test_the_kit_catches_an_exception_that_is_not_a_driver_error() -> None:
    """An exception other than ``DriverError`` out of a driver fails the kit."""
    async with kit_on(_Leaky) as kit:
        with pytest.raises(pytest.fail.Exception, match="raised OSError"):
            await check_history(kit)


@pytest.mark.asyncio
async def test_the_kit_catches_a_stream_renamed_by_a_resume() -> None:
    """A stream whose name changes when its session resumes fails the kit."""
    async with kit_on(_Renaming) as kit:
        with pytest.raises(AssertionError, match="renamed by a resume"):
            await check_stream_across_resume(kit)


@pytest.mark.asyncio
async def test_the_kit_catches_the_clients_own_close_reported_as_the_targets() -> None:
    """A driver that reports its own disconnect as the target's close fails the kit."""
    async with kit_on(_SelfReporting) as kit:
        with pytest.raises(AssertionError, match="not the client's"):
            await check_own_disconnects(kit)


@pytest.mark.asyncio
async def test_the_kit_catches_an_aclose_that_is_not_idempotent() -> None:
    """An ``aclose`` that fails the second time fails the kit."""
    async with kit_on(_Fragile) as kit:
        with pytest.raises(pytest.fail.Exception, match="closed twice"):
            await check_aclose(kit)


def _delivered(*positions: int | str, stream: str = "s") -> list[Delivered]:
    return [Delivered(stream=stream, position=p, kind="reply") for p in positions]


@pytest.mark.parametrize(
    ("order", "positions", "problem"),
    [
        ("dense", (1, 2, 2), "position 2 was reported twice"),
        ("dense", (1, 3), "position 3 follows 1 (dense)"),
        ("increasing", (5, 3), "position 3 follows 5 (increasing)"),
        ("dense", (1, "2"), "position '2' is not an integer"),
        ("opaque", ("a", "b", "a"), "position a was reported twice"),
    ],
    ids=["duplicate", "hole", "backwards", "not-an-int", "opaque-duplicate"],
)
def test_positions_that_break_their_model_are_named(
    order: Literal["dense", "increasing", "opaque"], positions: tuple[int | str, ...], problem: str
) -> None:
    """Each way positions can break the declared model is reported with the position."""
    model = dataclasses.replace(INFO.positions, order=order)
    assert [f"stream s: {problem}"] == position_problems(_delivered(*positions), model)


@pytest.mark.parametrize(
    ("order", "positions"),
    [("dense", (4, 5, 6)), ("increasing", (4, 9, 10)), ("opaque", ("x", 2, "y"))],
)
def test_positions_that_keep_their_model_pass(
    order: Literal["dense", "increasing", "opaque"], positions: tuple[int | str, ...]
) -> None:
    """Positions that keep the declared model, after the outcome's ``after``, have no problem."""
    model = dataclasses.replace(INFO.positions, order=order)
    assert [] == position_problems(_delivered(*positions), model, after={"s": 3})


def test_a_dense_stream_must_start_right_after_its_outcome() -> None:
    """Dense positions that do not begin right after ``after`` are reported."""
    assert ["stream s: first position 6 after 3 (dense)"] == position_problems(
        _delivered(6, 7), INFO.positions, after={"s": 3}
    )
