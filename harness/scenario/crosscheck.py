"""Rules that span a whole scenario: client names, routes, snapshot names, nesting.

The per-struct rules live in the model (``__post_init__``); these need the scenario around a step.
``cross_check`` returns every issue it finds, each with the path of the field it is about, so the
loader can point at the line of that field.
"""

from __future__ import annotations

import dataclasses

from harness.scenario.model import (
    ChangeIp,
    Chat,
    ClientSpec,
    Connect,
    Drop,
    Expect,
    Fault,
    Heal,
    Once,
    Parallel,
    Race,
    ReconnectFresh,
    Repeat,
    Resume,
    Scenario,
    Send,
    Snapshot,
    Step,
    Wait,
)
from harness.scenario.problems import closest

__all__ = ["Issue", "cross_check"]

FieldPath = tuple[str | int, ...]

# Drops the client does to its own socket; the others act on every connection through the
# scenario's proxy (half_open, proxy_down) or on the target (server_restart). docs/toxiproxy.md.
_PER_CONNECTION_DROPS = frozenset({"close", "reset"})
_PROXY_ONLY_DROPS = frozenset({"half_open", "proxy_down"})
# The steps that act on one client (``client``; omitted: the only one).
_WITH_CLIENT = (Connect, Chat, Send, Drop, ChangeIp, Resume, ReconnectFresh, Snapshot, Expect)


@dataclasses.dataclass(frozen=True, slots=True)
class Issue:
    """A rule that does not hold at ``path`` (``("steps", 3, "client")``)."""

    path: FieldPath
    message: str
    suggestion: str | None = None


def cross_check(scenario: Scenario) -> list[Issue]:
    """Every issue of the scenario as a whole, in the order of the file."""
    return _Checker(scenario).run()


class _Checker:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.clients: dict[str, ClientSpec] = {}
        self.snapshots: list[str] = []
        self.issues: list[Issue] = []

    def run(self) -> list[Issue]:
        for index, client in enumerate(self.scenario.clients):
            if client.name in self.clients:
                first = [c.name for c in self.scenario.clients].index(client.name)
                self.issues.append(
                    Issue(
                        ("clients", index, "name"),
                        f"client `{client.name}` is declared twice (first as clients[{first}])",
                    )
                )
            else:
                self.clients[client.name] = client
        self._target_options()
        self._requirements()
        self._steps(self.scenario.steps, ("steps",), in_parallel=False)
        return self.issues

    def _once(self, step: Once, path: FieldPath, *, in_parallel: bool, in_once: bool) -> None:
        if in_once:
            self.issues.append(Issue(path, "`once` steps cannot be nested"))
        elif not in_parallel:
            self.issues.append(
                Issue(
                    path,
                    "`once` only goes inside `parallel`: it waits for the clients of the group"
                    " (at the top level every step already runs once)",
                )
            )
        self._steps(step.steps, (*path, "steps"), in_parallel=False, in_once=True)

    def _target_options(self) -> None:
        # The names belong to the embedded reference server; the language only carries them.
        from harness.targets.embedded import PLANTED_FAULTS

        fault = self.scenario.plant_fault
        if fault is not None and fault not in PLANTED_FAULTS:
            self.issues.append(
                Issue(
                    ("plant_fault",),
                    f"the embedded reference server has no planted fault `{fault}` "
                    f"(it has {', '.join(PLANTED_FAULTS)})",
                    closest(fault, PLANTED_FAULTS),
                )
            )

    def _requirements(self) -> None:
        from harness.plan import known_requirements

        known = sorted(known_requirements())
        for index, name in enumerate(self.scenario.requires):
            if name not in known:
                self.issues.append(
                    Issue(
                        ("requires", index),
                        f"no capability `{name}` (capabilities: {', '.join(known)})",
                        closest(name, known),
                    )
                )

    def _steps(
        self, steps: tuple[Step, ...], path: FieldPath, *, in_parallel: bool, in_once: bool = False
    ) -> None:
        for index, step in enumerate(steps):
            self._step(step, (*path, index), in_parallel=in_parallel, in_once=in_once)

    def _step(
        self, step: Step, path: FieldPath, *, in_parallel: bool, in_once: bool = False
    ) -> None:
        if isinstance(step, Once):
            self._once(step, path, in_parallel=in_parallel, in_once=in_once)
            return
        problem = _not_once_only(step) if in_once else None
        if problem is not None:
            field, message = problem
            self.issues.append(Issue((*path, *field), message))
            return
        if isinstance(step, Parallel):
            if in_parallel:
                self.issues.append(Issue(path, "`parallel` steps cannot be nested"))
            self._steps(step.steps, (*path, "steps"), in_parallel=True)
            return
        if isinstance(step, Repeat):
            self._steps(step.steps, (*path, "steps"), in_parallel=in_parallel, in_once=in_once)
            return
        client = self._client(step, path, in_parallel=in_parallel)
        if isinstance(step, ChangeIp) and step.source is not None:
            self._check_source(step, path, client, in_parallel=in_parallel)
        if isinstance(step, Drop) and step.how in _PROXY_ONLY_DROPS:
            self._check_proxied(step, path, client)
        if isinstance(step, Snapshot):
            self.snapshots.append(step.name)
        if isinstance(step, Expect):
            self._check_snapshot_names(step, path)
        if isinstance(step, Resume) and step.session_of is not None:
            self._check_session_of(step, path, client)
        if isinstance(step, Race):
            self._check_race(step, path, in_parallel=in_parallel)

    def _client(self, step: Step, path: FieldPath, *, in_parallel: bool) -> ClientSpec | None:
        """The client the step acts on (``None`` inside ``parallel`` or when it has none)."""
        if not isinstance(step, _WITH_CLIENT):
            return None
        name = step.client
        declared = list(self.clients)
        if in_parallel:
            if name is not None:
                self.issues.append(
                    Issue(
                        (*path, "client"),
                        "inside `parallel` the steps act on each of its own clients; remove"
                        " `client`",
                    )
                )
            return None
        if name is not None:
            if name not in self.clients:
                self.issues.append(
                    Issue(
                        (*path, "client"),
                        f"unknown client `{name}` (declared: {', '.join(declared)})",
                        closest(name, declared),
                    )
                )
                return None
            return self.clients[name]
        if len(declared) == 1:
            return self.clients[declared[0]]
        if _needs_client(step):
            self.issues.append(
                Issue(
                    (*path, "client"),
                    f"this step needs `client`: the scenario declares {len(declared)} clients"
                    f" ({', '.join(declared)})",
                )
            )
        return None

    def _check_session_of(self, step: Resume, path: FieldPath, client: ClientSpec | None) -> None:
        name = step.session_of
        declared = list(self.clients)
        if name not in self.clients:
            self.issues.append(
                Issue(
                    (*path, "session_of"),
                    f"unknown client `{name}` (declared: {', '.join(declared)})",
                    closest(name or "", declared),
                )
            )
        elif client is not None and client.name == name:
            self.issues.append(
                Issue((*path, "session_of"), "a client cannot take over its own session")
            )

    def _check_race(self, step: Race, path: FieldPath, *, in_parallel: bool) -> None:
        if in_parallel:
            self.issues.append(
                Issue(path, "`race` names the scenario's own clients; it cannot be in `parallel`")
            )
            return
        declared = list(self.clients)
        named: list[tuple[FieldPath, str]] = [((*path, "session_of"), step.session_of)]
        named += [((*path, "clients", i), name) for i, name in enumerate(step.clients)]
        for field_path, name in named:
            if name not in self.clients:
                self.issues.append(
                    Issue(
                        field_path,
                        f"unknown client `{name}` (declared: {', '.join(declared)})",
                        closest(name, declared),
                    )
                )

    def _check_source(
        self, step: ChangeIp, path: FieldPath, client: ClientSpec | None, *, in_parallel: bool
    ) -> None:
        if in_parallel:
            who = "the clients of `parallel` go"
        elif client is not None and client.route == "proxy":
            who = f"client `{client.name}` goes"
        else:
            return
        self.issues.append(
            Issue(
                (*path, "source"),
                f"`source` only works on the direct route, and {who} through the proxy, where"
                " the target sees the proxy's address: use `forwarded_for`, or give the client"
                " `route: direct`",
            )
        )

    def _check_proxied(self, step: Drop, path: FieldPath, client: ClientSpec | None) -> None:
        if client is not None and client.route == "direct":
            self.issues.append(
                Issue(
                    (*path, "how"),
                    f"`how: {step.how}` acts on the proxy, and client `{client.name}` is on the"
                    " direct route, so it would not notice (give it `route: proxy`)",
                )
            )

    def _check_snapshot_names(self, step: Expect, path: FieldPath) -> None:
        references: list[tuple[FieldPath, str]] = []
        if step.context is not None:
            for field in ("equals", "against"):
                name = getattr(step.context, field)
                if name is not None:
                    references.append(((*path, "context", field), name))
        for index, metric in enumerate(step.metrics):
            for position, name in enumerate(metric.between or ()):
                references.append(((*path, "metrics", index, "between", position), name))
        for field_path, name in references:
            if name not in self.snapshots:
                known = sorted(set(self.snapshots))
                taken = f" (taken so far: {', '.join(known)})" if known else ""
                self.issues.append(
                    Issue(
                        field_path,
                        f"no snapshot named `{name}` is taken before this step{taken}",
                        closest(name, known),
                    )
                )


def _not_once_only(step: Step) -> tuple[FieldPath, str] | None:
    """Why ``step`` cannot be a step of ``once`` (the field it is about, the message), or
    None: inside ``once`` steps run one time for the whole group, so they act on the network,
    the target or the clock, never on one client."""
    kind = str(type(step).__struct_config__.tag)
    if isinstance(step, Drop) and step.how in _PER_CONNECTION_DROPS:
        return (
            ("how",),
            f"`how: {step.how}` acts on one client's connection, and the steps of `once` run"
            " for no client: use `proxy_down`, `half_open` or `server_restart`, or put the"
            " drop before `once`",
        )
    if isinstance(step, Expect) and step.needs_client:
        return (
            (),
            "an `expect` inside `once` is about the run (`latency`, `metrics`); checks about"
            " one client (`history`, `context`, `resume`, `delivery`, `store`) go before or"
            " after `once`, where every client runs them",
        )
    if isinstance(step, Drop | Fault | Heal | Wait | Expect | Repeat):
        return None
    return (
        (),
        f"`{kind}` acts on each client, and the steps of `once` run one time for the whole"
        " group: put it before or after `once` (inside `once`: drop, fault, heal, wait,"
        " repeat, and expect with latency or metrics)",
    )


def _needs_client(step: Step) -> bool:
    if isinstance(step, Expect):
        return step.needs_client
    if isinstance(step, Drop):
        return step.how in _PER_CONNECTION_DROPS
    return True
