"""The driver conformance kit: a pytest test class that checks a driver keeps its contract.

A driver author runs it against their own server. In the author's test module::

    from collections.abc import AsyncIterator

    import pytest_asyncio

    from harness.driver.conformance import DriverConformance, Subject
    from myproto_driver import factory


    class TestMyDriver(DriverConformance):
        @pytest_asyncio.fixture
        async def driver_under_test(self) -> AsyncIterator[Subject]:
            server = await start_my_server()  # however the author runs one
            yield Subject(factory=factory, url=server.url, credential_for=server.token_for)
            await server.stop()

and ``pytest`` runs every ``test_*`` of ``DriverConformance`` on that driver (it needs pytest and
pytest-asyncio; ``Subject.of_target`` takes any ``harness.targets.base.Target``). The kit checks
(docs/architecture.md, "The driver contract"):

- **declared**: ``info`` is a ``DriverInfo`` with known capabilities and a position model;
- **typed outcomes**: every ``Outcome`` has a ``kind`` of ``OutcomeKind``, ``terms`` a ``Terms`` or
  None, and survives the history's codec; every observation is an ``Observation`` that does too;
- **positions**: unique and ordered as the driver's ``PositionModel`` says, in stream names that
  stay the same across a resume of the same session and differ between sessions unless the
  model says positions continue across sessions;
- **honest capabilities**: each declared capability works; a check that needs one the driver
  does not declare is skipped, and the kit never calls that capability's method (every call
  goes through ``Client``, which refuses one that is not declared);
- **bounded waits**: a call given a timeout returns or raises ``DriverError`` (nothing else)
  within the timeout plus one ``unit``, and a call that cannot succeed (no connection, no
  session) raises ``DriverError``;
- **aclose** is idempotent.

The kit judges the driver, not the server: it assumes a server that keeps its own protocol.
Its waits are multiples of ``Subject.unit`` scaled by ``HARNESS_TIMEOUT_FACTOR``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, get_args

import msgspec
import pytest
import pytest_asyncio

from harness.driver.base import (
    CAPABILITIES,
    ClientConfig,
    Driver,
    DriverError,
    DriverFactory,
    DriverInfo,
    PositionModel,
    RawAnswer,
    Route,
)
from harness.history import (
    Body,
    Closed,
    Delivered,
    Notice,
    Observation,
    Outcome,
    OutcomeKind,
    Position,
    Terms,
    Turn,
)
from harness.runner import timeout_factor
from harness.targets.base import Target

__all__ = [
    "Client",
    "DriverConformance",
    "Kit",
    "Subject",
    "observation_problems",
    "outcome_problems",
    "position_problems",
]

T = TypeVar("T")
_OBSERVATIONS: tuple[type, ...] = get_args(Observation)
_ACCEPTED: frozenset[str] = frozenset({"full", "degraded"})


@dataclass(frozen=True)
class Subject:
    """The driver under test and the server it talks to."""

    factory: DriverFactory
    url: str
    credential_for: Callable[[str], str]
    """A credential for a user name (the same one for every name is fine)."""
    route: Route = field(default_factory=Route)
    """How the kit's clients connect (``Route()``: straight to the URL's host)."""
    moved: Route | None = None
    """A route from another client address, to provoke a notice; by default the kit uses
    ``source_ip`` (127.0.0.2) or ``forwarded_for`` (203.0.113.9), whichever is declared."""
    source_ip: str = "127.0.0.2"
    unit: float = 1.0
    """Seconds: every wait of the kit is a multiple of it."""

    @classmethod
    def of_target(cls, factory: DriverFactory, target: Target, **options: Any) -> Subject:
        """The subject for a started ``Target``."""
        return cls(factory=factory, url=target.url, credential_for=target.credential_for, **options)


# --- pure checks, usable on their own -------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def outcome_problems(outcome: object) -> list[str]:
    """What is wrong with a connect's or resume's answer as the contract types it."""
    if not isinstance(outcome, Outcome):
        return [f"an Outcome was expected, got {type(outcome).__name__}"]
    problems = []
    if outcome.kind not in get_args(OutcomeKind):
        problems.append(f"kind {outcome.kind!r} is not one of {get_args(OutcomeKind)}")
    if outcome.terms is not None and not isinstance(outcome.terms, Terms):
        problems.append(f"terms is a {type(outcome.terms).__name__}, not Terms or None")
    for name in ("reason", "session", "stream"):
        value = getattr(outcome, name)
        if value is not None and not isinstance(value, str):
            problems.append(f"{name} is a {type(value).__name__}, not a str or None")
    try:
        again = msgspec.json.decode(msgspec.json.encode(outcome), type=Body)
    except (msgspec.ValidationError, TypeError) as exc:
        problems.append(f"it does not survive the history's codec: {exc}")
    else:
        if again != outcome:
            problems.append("it changes through the history's codec")
    return problems


def observation_problems(observed: Sequence[object]) -> list[str]:
    """What is wrong with what a driver reported through ``observe``."""
    problems = []
    for index, item in enumerate(observed):
        if not isinstance(item, _OBSERVATIONS):
            problems.append(f"observation {index} is a {type(item).__name__}, not an Observation")
            continue
        try:
            again = msgspec.json.decode(msgspec.json.encode(item), type=Body)
        except (msgspec.ValidationError, TypeError) as exc:
            problems.append(f"observation {index} does not survive the history's codec: {exc}")
            continue
        if again != item:
            problems.append(f"observation {index} changes through the history's codec")
    return problems


def position_problems(
    deliveries: Sequence[Delivered],
    model: PositionModel,
    *,
    after: Mapping[str, Position] | None = None,
) -> list[str]:
    """Where the positions of ``deliveries`` (in arrival order, from a server that lost and
    doubled nothing) break the driver's declared model; ``after`` is, per stream, the position
    the client already had when the deliveries began (an ``Outcome.after``)."""
    problems: list[str] = []
    streams: dict[str, list[Position]] = {}
    for d in deliveries:
        streams.setdefault(d.stream, []).append(d.position)
    for stream, got in streams.items():
        doubled = sorted({str(p) for p in got if got.count(p) > 1})
        if doubled:
            problems.append(f"stream {stream}: position {doubled[0]} was reported twice")
            continue
        if model.order == "opaque":
            continue
        wrong = [p for p in got if not _is_int(p)]
        if wrong:
            problems.append(f"stream {stream}: position {wrong[0]!r} is not an integer")
            continue
        ints = [int(p) for p in got]
        for before, now in itertools.pairwise(ints):
            if model.order == "dense" and now != before + 1:
                problems.append(f"stream {stream}: position {now} follows {before} (dense)")
                break
            if now <= before:
                problems.append(f"stream {stream}: position {now} follows {before} (increasing)")
                break
        start = (after or {}).get(stream)
        if _is_int(start) and ints:
            assert isinstance(start, int)
            if model.order == "dense" and ints[0] != start + 1:
                problems.append(f"stream {stream}: first position {ints[0]} after {start} (dense)")
            elif ints[0] <= start:
                problems.append(f"stream {stream}: first position {ints[0]} is not after {start}")
    return problems


# --- the kit's clients ----------------------------------------------------------------------------


class Client:
    """A driver the kit made, with what it observed. Every call is bounded, may only raise
    ``DriverError``, and needs the capability it exercises to be declared."""

    def __init__(self, kit: Kit, name: str, user: str, route: Route) -> None:
        self.kit = kit
        self.name = name
        self.observed: list[Observation] = []
        config = ClientConfig(
            name=name, url=kit.subject.url, credential=kit.subject.credential_for(user), route=route
        )
        self.driver: Driver = kit.subject.factory(config, self.observed.append)

    def _declared(self, capability: str, method: str) -> None:
        if capability not in self.kit.info.capabilities:
            raise AssertionError(
                f"the kit called {method} although the driver does not declare {capability!r}"
            )

    @property
    def deliveries(self) -> list[Delivered]:
        return [o for o in self.observed if isinstance(o, Delivered)]

    async def connect(self, timeout: float | None = None) -> Outcome:
        t = self.kit.seconds(5) if timeout is None else timeout
        outcome = await self.kit.bounded(self.driver.connect(t), t, f"{self.name}: connect")
        self.kit.typed(outcome, f"{self.name}: connect")
        return outcome

    async def resume(
        self,
        timeout: float | None = None,
        *,
        token: Literal["current", "previous"] = "current",
        session_of: Client | None = None,
    ) -> Outcome:
        self._declared("resume", "resume")
        if token == "previous":
            self._declared("resume_previous_token", "resume(token='previous')")
        if session_of is not None:
            self._declared("take_over", "resume(session_of=...)")
        t = self.kit.seconds(5) if timeout is None else timeout
        other = session_of.driver if session_of is not None else None
        call = self.driver.resume(t, token=token, session_of=other)
        outcome = await self.kit.bounded(call, t, f"{self.name}: resume")
        self.kit.typed(outcome, f"{self.name}: resume")
        return outcome

    async def send_message(self, text: str) -> str:
        self._declared("chat", "send_message")
        t = self.kit.seconds(1)
        return await self.kit.bounded(self.driver.send_message(text), t, "send_message")

    async def await_reply(self, message_id: str, timeout: float | None = None) -> int:
        self._declared("chat", "await_reply")
        t = self.kit.seconds(5) if timeout is None else timeout
        return await self.kit.bounded(self.driver.await_reply(message_id, t), t, "await_reply")

    async def chat(self, text: str) -> tuple[str, int]:
        message_id = await self.send_message(text)
        return message_id, await self.await_reply(message_id)

    async def fetch_history(self, timeout: float | None = None) -> list[Turn]:
        self._declared("history", "fetch_history")
        t = self.kit.seconds(5) if timeout is None else timeout
        return await self.kit.bounded(self.driver.fetch_history(t), t, "fetch_history")

    async def fetch_context(self, timeout: float | None = None) -> Mapping[str, Any]:
        self._declared("context", "fetch_context")
        t = self.kit.seconds(5) if timeout is None else timeout
        return await self.kit.bounded(self.driver.fetch_context(t), t, "fetch_context")

    async def send_raw(
        self, frame: str | bytes, timeout: float | None = None, *, until_close: bool = False
    ) -> RawAnswer:
        self._declared("raw_frames", "send_raw")
        t = self.kit.seconds(2) if timeout is None else timeout
        call = self.driver.send_raw(frame, t, until_close=until_close)
        return await self.kit.bounded(call, t, "send_raw")

    async def disconnect(self, how: Literal["close", "reset"]) -> None:
        t = self.kit.seconds(2)
        await self.kit.bounded(self.driver.disconnect(how), t, f"disconnect({how})")

    def set_route(self, route: Route) -> None:
        if route.source_ip is not None:
            self._declared("source_ip", "set_route(source_ip=...)")
        if route.forwarded_for is not None:
            self._declared("forwarded_for", "set_route(forwarded_for=...)")
        self.driver.set_route(route)

    async def aclose(self) -> None:
        await self.kit.bounded(self.driver.aclose(), self.kit.seconds(2), "aclose")


class Kit:
    """One check's clients, bounds and assertions."""

    def __init__(self, subject: Subject) -> None:
        self.subject = subject
        self.info: DriverInfo = subject.factory.info
        self.factor = timeout_factor()
        self.clients: list[Client] = []
        self._users = secrets.token_hex(3)

    def seconds(self, units: float) -> float:
        """``units`` of the subject's unit, scaled by ``HARNESS_TIMEOUT_FACTOR``."""
        return units * self.subject.unit * self.factor

    @property
    def grace(self) -> float:
        """How much longer than its timeout a call may take."""
        return self.seconds(1)

    def need(self, *capabilities: str) -> None:
        """Skip the check unless the driver declares every one of ``capabilities``."""
        for capability in capabilities:
            if capability not in self.info.capabilities:
                pytest.skip(
                    f"the driver does not declare {capability!r} ({CAPABILITIES[capability]})"
                )

    def client(self, name: str = "kit", *, user: str | None = None) -> Client:
        made = Client(
            self,
            f"{name}-{len(self.clients) + 1}",
            f"{user or name}-{self._users}",
            self.subject.route,
        )
        self.clients.append(made)
        return made

    async def bounded(self, call: Awaitable[T], timeout: float, what: str) -> T:
        """Await ``call``; fail the check if it takes longer than ``timeout`` plus the grace,
        or raises anything but ``DriverError``."""
        limit = timeout + self.grace
        started = time.monotonic()
        try:
            async with asyncio.timeout(limit):
                value = await call
        except DriverError:
            self._in_time(what, started, limit)
            raise
        except TimeoutError:
            pytest.fail(f"{what} was given {timeout:g} s and had not returned after {limit:g} s")
        except Exception as exc:
            pytest.fail(f"{what} raised {type(exc).__name__}: {exc} (a driver raises DriverError)")
        self._in_time(what, started, limit)
        return value

    def _in_time(self, what: str, started: float, limit: float) -> None:
        took = time.monotonic() - started
        if took > limit:
            pytest.fail(f"{what} took {took:.2f} s, more than its bound of {limit:g} s")

    async def until(self, found: Callable[[], bool], seconds: float, what: str) -> None:
        """Poll ``found`` for up to ``seconds``; fail the check with ``what`` otherwise."""
        deadline = time.monotonic() + seconds
        while not found():
            if time.monotonic() > deadline:
                pytest.fail(f"{what} within {seconds:g} s")
            await asyncio.sleep(0.01)

    def typed(self, outcome: object, what: str) -> None:
        problems = outcome_problems(outcome)
        if problems:
            pytest.fail(f"{what}: {'; '.join(problems)}")

    def check_observations(self) -> None:
        """Every client's observations are typed and survive the history's codec."""
        for client in self.clients:
            problems = observation_problems(client.observed)
            if problems:
                pytest.fail(f"{client.name}: {'; '.join(problems[:5])}")

    def check_positions(
        self, client: Client, *, after: Mapping[str, Position] | None = None
    ) -> None:
        problems = position_problems(client.deliveries, self.info.positions, after=after)
        if problems:
            pytest.fail(f"{client.name}: {'; '.join(problems[:5])}")

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


async def _expect_driver_error(call: Awaitable[object], what: str) -> None:
    try:
        value = await call
    except DriverError:
        return
    pytest.fail(f"{what} returned {value!r}; it cannot succeed and must raise DriverError")


# --- the checks -----------------------------------------------------------------------------------


async def check_declared(kit: Kit) -> None:
    """The factory and its drivers declare the same known capabilities and a position model."""
    info = kit.info
    assert isinstance(info, DriverInfo), f"factory.info is a {type(info).__name__}"
    assert set() == set(info.capabilities) - set(CAPABILITIES)
    assert isinstance(info.positions, PositionModel)
    assert info.positions.order in ("dense", "increasing", "opaque")
    assert info == kit.client().driver.info


async def check_connect(kit: Kit) -> None:
    """A connect gives a typed new outcome, and the driver says it is connected."""
    client = kit.client()
    assert not client.driver.connected
    outcome = await client.connect()
    assert "new" == outcome.kind, f"a connect gave {outcome.kind} ({outcome.reason})"
    assert client.driver.connected
    assert isinstance(outcome.session, str), "a new session's outcome names the session"
    kit.check_observations()


async def check_own_disconnects(kit: Kit) -> None:
    """The client's own close and reset end the connection and are not reported as the
    target's closes."""
    client = kit.client()
    for how in ("close", "reset"):
        await client.connect()
        await client.disconnect(how)
        assert not client.driver.connected, f"still connected after disconnect({how})"
    await asyncio.sleep(kit.seconds(0.1))
    closes = [o for o in client.observed if isinstance(o, Closed)]
    assert [] == closes, "a Closed observation is the target's close, not the client's"
    kit.check_observations()


async def check_positions(kit: Kit) -> None:
    """Positions are unique and ordered as the driver declares, after the outcome's ``after``."""
    kit.need("chat")
    client = kit.client()
    outcome = await client.connect()
    for n in range(3):
        await client.chat(f"hello {n}")
    assert client.deliveries, "three replies were answered and nothing was observed"
    after = {outcome.stream: outcome.after} if outcome.stream and outcome.after is not None else {}
    kit.check_positions(client, after=after)
    kit.check_observations()


async def check_stream_across_resume(kit: Kit) -> None:
    """A resume of the same session keeps its stream name, and positions go on in it."""
    kit.need("chat", "resume")
    client = kit.client()
    first = await client.connect()
    await client.chat("before the drop")
    before = list(client.deliveries)
    await client.disconnect("reset")
    again = await client.resume()
    assert again.kind in _ACCEPTED, (
        f"a resume right after a drop gave {again.kind} ({again.reason})"
    )
    assert first.session == again.session, "a resume of the same session names another session"
    if "epoch_changed" not in again.warnings:
        assert first.stream == again.stream, "the stream was renamed by a resume of its session"
    await client.chat("after the resume")
    after = client.deliveries[len(before) :]
    assert after, "a reply after the resume was answered and nothing was observed"
    assert {again.stream} >= {d.stream for d in after}, (
        "deliveries after the resume left its stream"
    )
    kit.check_positions(client)
    kit.check_observations()


async def check_sessions_and_streams(kit: Kit) -> None:
    """Two sessions of one client use streams as the position model says: distinct ones, or
    one whose positions go on."""
    kit.need("chat")
    client = kit.client()
    first = await client.connect()
    await client.chat("first session")
    seen = len(client.deliveries)
    second = await client.connect()
    await client.chat("second session")
    assert first.session != second.session, "a second connect reopened the first session"
    old = {d.stream for d in client.deliveries[:seen]}
    new = {d.stream for d in client.deliveries[seen:]}
    if not kit.info.positions.continues_across_sessions:
        assert set() == old & new, (
            f"positions restart with each session (declared), but sessions share stream {old & new}"
        )
    else:
        kit.check_positions(client)
    kit.check_observations()


async def check_chat(kit: Kit) -> None:
    """A reply is observed: deliveries that name the message, one of them final."""
    kit.need("chat")
    client = kit.client()
    await client.connect()
    message_id, parts = await client.chat("hello")
    assert isinstance(message_id, str)
    assert _is_int(parts), f"await_reply returned {parts!r}, not a count of parts"
    assert parts >= 1, f"await_reply returned {parts}: a complete reply has a part"
    reply = [d for d in client.deliveries if d.reply_to == message_id]
    assert parts == len(reply), "await_reply's count differs from the deliveries observed"
    assert any(d.final for d in reply), "no delivery of the reply is marked final"
    kit.check_observations()


async def check_resume_previous_token(kit: Kit) -> None:
    """Presenting the previous resume credential gives a typed outcome."""
    kit.need("resume", "resume_previous_token")
    client = kit.client()
    await client.connect()
    await client.disconnect("reset")
    assert (await client.resume()).kind in _ACCEPTED
    await client.disconnect("reset")
    await client.resume(token="previous")  # its kind is the server's business; its type ours
    kit.check_observations()


async def check_take_over(kit: Kit) -> None:
    """Another client resumes a live session and holds it."""
    kit.need("resume", "take_over")
    first = kit.client("owner")
    opened = await first.connect()
    second = kit.client("other", user="owner")
    taken = await second.resume(session_of=first)
    assert taken.kind in _ACCEPTED, f"the take-over gave {taken.kind} ({taken.reason})"
    assert opened.session == taken.session, "the take-over holds another session"
    assert second.driver.connected
    kit.check_observations()


async def check_close_reason(kit: Kit) -> None:
    """The client whose session was taken over observes a close with the server's reason."""
    kit.need("resume", "take_over", "close_reason")
    first = kit.client("owner")
    await first.connect()
    second = kit.client("other", user="owner")
    await second.resume(session_of=first)

    def closed_with_reason() -> bool:
        return any(isinstance(o, Closed) and o.reason for o in first.observed)

    await kit.until(closed_with_reason, kit.seconds(2), "no Closed with a reason was observed")
    kit.check_observations()


async def check_history(kit: Kit) -> None:
    """The stored history is a list of turns; it holds a message sent in the session."""
    kit.need("history")
    client = kit.client()
    await client.connect()
    text = f"remember this {secrets.token_hex(3)}"
    message_id = (await client.chat(text))[0] if "chat" in kit.info.capabilities else None
    turns = await client.fetch_history()
    assert isinstance(turns, list), f"fetch_history returned a {type(turns).__name__}"
    assert all(isinstance(t, Turn) for t in turns), "fetch_history returned more than turns"
    msgspec.json.decode(msgspec.json.encode(turns), type=list[Turn])
    if message_id is not None:
        mine = [t for t in turns if t.message_id == message_id and t.role == "user"]
        assert [text] == [t.text for t in mine], "the message sent is not stored once as a turn"


async def check_context(kit: Kit) -> None:
    """The stored context is a mapping the history can hold."""
    kit.need("context")
    client = kit.client()
    await client.connect()
    context = await client.fetch_context()
    assert isinstance(context, Mapping)
    msgspec.json.decode(msgspec.json.encode(dict(context)))


async def check_raw_frames(kit: Kit) -> None:
    """A raw frame gets a typed answer, in time."""
    kit.need("raw_frames")
    client = kit.client()
    await client.connect()
    answer = await client.send_raw("this is no frame of any protocol", kit.seconds(1))
    assert isinstance(answer, RawAnswer)
    assert answer.error is None or isinstance(answer.error, str)
    assert answer.close is None or _is_int(answer.close)


async def check_source_ip(kit: Kit) -> None:
    """A connection from another loopback source address opens a session."""
    kit.need("source_ip")
    client = kit.client()
    client.set_route(Route(source_ip=kit.subject.source_ip))
    assert "new" == (await client.connect()).kind


async def check_forwarded_for(kit: Kit) -> None:
    """A connection with an X-Forwarded-For header opens a session."""
    kit.need("forwarded_for")
    client = kit.client()
    route = kit.subject.route
    client.set_route(Route(connect_to=route.connect_to, forwarded_for="203.0.113.9"))
    assert "new" == (await client.connect()).kind


def _moved(kit: Kit) -> Route:
    if kit.subject.moved is not None:
        return kit.subject.moved
    if "source_ip" in kit.info.capabilities:
        return Route(source_ip=kit.subject.source_ip)
    if "forwarded_for" in kit.info.capabilities:
        return Route(connect_to=kit.subject.route.connect_to, forwarded_for="203.0.113.9")
    pytest.skip("the kit moves a client with source_ip or forwarded_for; neither is declared")


async def check_notices(kit: Kit) -> None:
    """A session resumed from another address is followed by a notice."""
    kit.need("notices", "resume")
    moved = _moved(kit)
    client = kit.client()
    await client.connect()
    await client.disconnect("reset")
    client.set_route(moved)
    outcome = await client.resume()
    if outcome.kind not in _ACCEPTED:
        pytest.skip(f"the server refused the moved resume ({outcome.reason}): no notice to see")

    def noticed() -> bool:
        return any(isinstance(o, Notice) for o in client.observed)

    await kit.until(noticed, kit.seconds(2), "no Notice was observed after a resume that moved")
    kit.check_observations()


async def check_waits_are_bounded(kit: Kit) -> None:
    """Calls given a short timeout return or raise DriverError within it (plus the grace)."""
    short = kit.seconds(0.2)
    client = kit.client()
    await client.connect(short)
    if "chat" in kit.info.capabilities:
        await _expect_driver_error(client.await_reply("never-sent", short), "await_reply")
    for name, capability in (("fetch_history", "history"), ("fetch_context", "context")):
        if capability in kit.info.capabilities:
            with contextlib.suppress(DriverError):
                await getattr(client, name)(short)
    if "raw_frames" in kit.info.capabilities:
        await client.send_raw("{}", short, until_close=True)


async def check_calls_without_a_connection(kit: Kit) -> None:
    """What cannot succeed (no session to resume, no connection to wait on) raises
    DriverError, promptly."""
    short = kit.seconds(0.2)
    fresh = kit.client("fresh")
    declared = kit.info.capabilities
    if "resume" in declared:
        await _expect_driver_error(fresh.resume(short), "resume before any session")
    if "chat" in declared:
        await _expect_driver_error(
            fresh.await_reply("never-sent", short), "await_reply, no session"
        )
    if "history" in declared:
        await _expect_driver_error(fresh.fetch_history(short), "fetch_history before any session")
    if "context" in declared:
        await _expect_driver_error(fresh.fetch_context(short), "fetch_context before any session")
    client = kit.client()
    await client.connect()
    await client.disconnect("close")
    if "chat" in declared:
        await _expect_driver_error(client.await_reply("never-sent", short), "await_reply offline")
    if "raw_frames" in declared:
        await _expect_driver_error(client.send_raw("{}", short), "send_raw offline")


async def check_aclose(kit: Kit) -> None:
    """``aclose`` may be called twice, before any connection and after one."""
    idle = kit.client("idle")
    await idle.aclose()
    await idle.aclose()
    client = kit.client()
    await client.connect()
    await client.aclose()
    await client.aclose()
    assert not client.driver.connected


# --- the pytest class -----------------------------------------------------------------------------


@pytest.mark.asyncio
class DriverConformance:
    """Subclass it as ``Test...`` and override ``driver_under_test``; see the module's doc."""

    @pytest_asyncio.fixture
    async def driver_under_test(self) -> AsyncIterator[Subject]:
        pytest.fail("override the driver_under_test fixture to give the kit its Subject")
        yield  # pragma: no cover

    @pytest_asyncio.fixture
    async def kit(self, driver_under_test: Subject) -> AsyncIterator[Kit]:
        kit = Kit(driver_under_test)
        try:
            yield kit
        finally:
            await kit.aclose()

    async def test_declared(self, kit: Kit) -> None:
        """The factory and its drivers declare known capabilities and a position model."""
        await check_declared(kit)

    async def test_connect(self, kit: Kit) -> None:
        """A connect gives a typed new outcome."""
        await check_connect(kit)

    async def test_own_disconnects(self, kit: Kit) -> None:
        """The client's own close and reset are not reported as the target's."""
        await check_own_disconnects(kit)

    async def test_positions(self, kit: Kit) -> None:
        """Positions are unique and ordered as declared."""
        await check_positions(kit)

    async def test_stream_across_resume(self, kit: Kit) -> None:
        """A resume keeps its session's stream name."""
        await check_stream_across_resume(kit)

    async def test_sessions_and_streams(self, kit: Kit) -> None:
        """Sessions use streams as the position model says."""
        await check_sessions_and_streams(kit)

    async def test_chat(self, kit: Kit) -> None:
        """A reply is observed, with a final part."""
        await check_chat(kit)

    async def test_resume_previous_token(self, kit: Kit) -> None:
        """The previous resume credential gives a typed outcome."""
        await check_resume_previous_token(kit)

    async def test_take_over(self, kit: Kit) -> None:
        """Another client takes a live session over."""
        await check_take_over(kit)

    async def test_close_reason(self, kit: Kit) -> None:
        """A taken-over client observes the close's reason."""
        await check_close_reason(kit)

    async def test_history(self, kit: Kit) -> None:
        """The stored history holds the message sent."""
        await check_history(kit)

    async def test_context(self, kit: Kit) -> None:
        """The stored context is a JSON mapping."""
        await check_context(kit)

    async def test_raw_frames(self, kit: Kit) -> None:
        """A raw frame gets a typed answer."""
        await check_raw_frames(kit)

    async def test_source_ip(self, kit: Kit) -> None:
        """A chosen source address connects."""
        await check_source_ip(kit)

    async def test_forwarded_for(self, kit: Kit) -> None:
        """An X-Forwarded-For header connects."""
        await check_forwarded_for(kit)

    async def test_notices(self, kit: Kit) -> None:
        """A resume from another address is noticed."""
        await check_notices(kit)

    async def test_waits_are_bounded(self, kit: Kit) -> None:
        """Every wait ends within its timeout and the grace."""
        await check_waits_are_bounded(kit)

    async def test_calls_without_a_connection(self, kit: Kit) -> None:
        """What cannot succeed raises DriverError."""
        await check_calls_without_a_connection(kit)

    async def test_aclose(self, kit: Kit) -> None:
        """aclose is idempotent."""
        await check_aclose(kit)
