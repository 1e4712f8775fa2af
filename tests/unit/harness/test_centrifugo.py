"""The Centrifugo driver and target without a server: wire codec, outcome mapping, config."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import jwt
import pytest

from harness.checkers import client_view, delivery
from harness.driver import centrifugo_wire as wire
from harness.driver.base import CAPABILITIES, ClientConfig, Driver
from harness.driver.centrifugo import INFO, CentrifugoDriver, chat_fields, factory, jwt_subject
from harness.history import Connect, Delivered, History, Observation, Outcome, Violation
from harness.targets import centrifugo as target
from harness.targets.base import TargetError


def test_a_frame_with_several_objects_decodes_to_each_in_order() -> None:
    """A server frame may hold several JSON objects separated by newlines (a push, a reply)."""
    frame = (
        '{"push":{"channel":"chat:#a","pub":{"data":{"id":"a-1","text":"hi"},"offset":1,'
        '"epoch":"E"}}}\n{"id":1003,"publish":{}}\n{}'
    )
    push, reply, ping = wire.decode_frame(frame)
    assert push.push is not None
    assert push.push.pub is not None
    assert (1, "E") == (push.push.pub.offset, push.push.pub.epoch)
    assert 1003 == reply.id
    assert {} == reply.publish
    assert wire.is_ping(ping)
    assert not wire.is_ping(reply)


def test_an_error_reply_decodes_with_its_code_and_a_reason_name() -> None:
    """Errors are typed; their message becomes the one-token reason scenario files compare."""
    (reply,) = wire.decode_frame('{"id":2,"error":{"code":103,"message":"permission denied"}}')
    assert reply.error == wire.Error(code=103, message="permission denied")
    assert "permission_denied" == wire.reason_name(reply.error.message)


def test_a_command_frame_is_one_json_object_with_its_id() -> None:
    """Commands go out as ``{"id": N, "<method>": params}``."""
    frame = wire.command(1001, "subscribe", {"channel": "chat:#a", "recover": True})
    assert {"id": 1001, "subscribe": {"channel": "chat:#a", "recover": True}} == json.loads(frame)


def test_chat_fields_read_only_what_the_harness_published() -> None:
    """A publication of the harness carries an id and a text; anything else has neither."""
    assert ("a-1", "hi") == chat_fields({"id": "a-1", "text": "hi"})
    assert (None, None) == chat_fields(["not", "a", "dict"])
    assert (None, None) == chat_fields({"id": 7})


def _driver(observed: list[Observation], user: str = "alice") -> CentrifugoDriver:
    token = jwt.encode({"sub": user}, "k" * 32, algorithm="HS256")
    config = ClientConfig(name=user, url="ws://127.0.0.1:9/connection/websocket", credential=token)
    return CentrifugoDriver(config, observed.append)


def _subscribe(driver: CentrifugoDriver, recover: tuple[int, str] | None, body: str) -> Outcome:
    (reply,) = wire.decode_frame(body)
    return driver._subscribed_to(driver.channel, recover, reply)


def test_the_driver_meets_the_contract_and_declares_only_known_capabilities() -> None:
    """The factory makes `Driver`s; the capabilities are from the fixed vocabulary, positions
    dense offsets that go on across connections; nothing it cannot do is declared."""
    assert isinstance(_driver([]), Driver)
    assert factory.info is INFO
    assert INFO.capabilities <= CAPABILITIES.keys()
    assert not INFO.capabilities & {"context", "resume_previous_token", "notices", "resend"}
    assert ("dense", True) == (INFO.positions.order, INFO.positions.continues_across_sessions)


def test_the_channel_is_the_users_own_from_the_token_subject() -> None:
    """The user comes from the JWT's `sub`; the channel is that user's user-limited one."""
    assert "chat:#alice" == _driver([]).channel
    assert "" == jwt_subject("not a jwt")


def test_a_fresh_subscribe_is_new_at_the_stream_top() -> None:
    """Connect: outcome new, stream channel#epoch, deliveries continue after the top offset."""
    driver = _driver([])
    driver._client_id = "c1"
    outcome = _subscribe(driver, None, '{"id":1,"subscribe":{"epoch":"E","offset":4}}')
    expected = Outcome(kind="new", session="chat:#alice@c1", stream="chat:#alice#E", after=4)
    assert expected == outcome


def test_a_recover_keeps_the_session_a_fresh_subscribe_begins_another() -> None:
    """A session is one subscription's life: recovers keep it; the next connect (another
    connection id) is a new session in the same stream, whose positions go on."""
    driver = _driver([])
    driver._client_id = "c1"
    first = _subscribe(driver, None, '{"id":1,"subscribe":{"epoch":"E","offset":4}}')
    driver._client_id = "c2"
    again = _subscribe(driver, (4, "E"), '{"id":2,"subscribe":{"recovered":true,"epoch":"E"}}')
    assert first.session == again.session == "chat:#alice@c1"
    driver._client_id = "c3"
    fresh = _subscribe(driver, None, '{"id":3,"subscribe":{"epoch":"E","offset":4}}')
    assert ("chat:#alice@c3", first.stream) == (fresh.session, fresh.stream)


def test_a_recovered_subscribe_is_full_and_observes_the_missed_publications_first() -> None:
    """recovered: true is full; the reply's publications are observed at their offsets."""
    observed: list[Observation] = []
    driver = _driver(observed)
    body = (
        '{"id":1,"subscribe":{"recovered":true,"epoch":"E","offset":2,"publications":'
        '[{"data":{"id":"w-1","text":"a"},"offset":3},{"data":{"id":"w-2","text":"b"},"offset":4}]}}'
    )
    outcome = _subscribe(driver, (2, "E"), body)
    assert ("full", 2, 2) == (outcome.kind, outcome.after, outcome.replayed)
    assert [3, 4] == [o.position for o in observed if isinstance(o, Delivered)]
    assert {"publication"} == {o.kind for o in observed if isinstance(o, Delivered)}
    assert {"chat:#alice#E"} == {o.stream for o in observed if isinstance(o, Delivered)}


def test_a_refused_recover_in_the_same_epoch_is_degraded_and_declares_what_it_skipped() -> None:
    """recovered absent: degraded with not_recovered; offsets between the client's and the
    top are declared missed, so the delivery checker counts them lost by the server's word."""
    driver = _driver([])
    outcome = _subscribe(driver, (2, "E"), '{"id":1,"subscribe":{"epoch":"E","offset":13}}')
    assert ("degraded", ("not_recovered",)) == (outcome.kind, outcome.warnings)
    assert (2, (3, 13), "chat:#alice#E") == (outcome.after, outcome.missed, outcome.stream)


def test_a_new_epoch_is_a_new_stream_and_says_so() -> None:
    """The server lost the stream: degraded with epoch_changed; the new stream starts at its top."""
    driver = _driver([])
    outcome = _subscribe(driver, (5, "OLD"), '{"id":1,"subscribe":{"epoch":"NEW"}}')
    assert ("epoch_changed", "not_recovered") == outcome.warnings
    assert ("chat:#alice#NEW", 0, None) == (outcome.stream, outcome.after, outcome.missed)


def test_a_subscribe_error_is_a_rejection_with_its_reason() -> None:
    """Permission denied (another user's channel) is a typed rejection, not a driver failure."""
    driver = _driver([])
    outcome = _subscribe(
        driver, (2, "E"), '{"id":1,"error":{"code":103,"message":"permission denied"}}'
    )
    assert Outcome(kind="rejected", reason="permission_denied") == outcome


def test_a_publication_without_an_offset_is_a_violation_not_a_delivery() -> None:
    """A channel without history gives offset 0: nothing to judge positions by, so it is said."""
    observed: list[Observation] = []
    driver = _driver(observed)
    driver._publication(wire.Publication(data={"id": "x", "text": "y"}))
    assert [type(o) for o in observed] == [Violation]


def test_declared_missed_offsets_are_not_a_loss_to_the_delivery_checker() -> None:
    """The history a degraded recover leaves passes the dense delivery check."""
    history = History()
    op = history.invoke("c", Connect())
    history.complete(op, "ok", Outcome(kind="new", session="ch", stream="ch#E", after=0))
    for offset in (1, 2):
        history.event("c", Delivered(stream="ch#E", position=offset, kind="publication"))
    op = history.invoke("c", Connect())
    resumed = Outcome(kind="degraded", session="ch", stream="ch#E", after=2, missed=(3, 13))
    history.complete(op, "ok", resumed)
    history.event("c", Delivered(stream="ch#E", position=14, kind="publication"))
    assert delivery(client_view(history.ops, "c"), INFO.positions).passed


def test_the_run_config_is_the_shipped_one_with_this_runs_secrets_on_loopback() -> None:
    """Secrets are made per run, never shipped; the server binds loopback, stats off."""
    shipped = target.shipped_config()
    assert "" == shipped["client"]["token"]["hmac_secret_key"] == shipped["http_api"]["key"]
    config = target.run_config(4321, hmac_secret="s" * 32, api_key="k" * 24)
    assert {"address": "127.0.0.1", "port": 4321} == config["http_server"]
    assert "s" * 32 == config["client"]["token"]["hmac_secret_key"]
    assert "k" * 24 == config["http_api"]["key"]
    assert config["usage_stats"]["disabled"] is True
    (chat,) = config["channel"]["namespaces"]
    assert (15, "4s", True) == (chat["history_size"], chat["history_ttl"], chat["force_recovery"])


def test_the_connection_gauge_sums_every_label_set() -> None:
    """The live gauge is labelled by client name and transport; all of them count."""
    text = (
        "# TYPE centrifugo_client_connections_inflight gauge\n"
        'centrifugo_client_connections_inflight{client_name="a",transport="websocket"} 2\n'
        'centrifugo_client_connections_inflight{client_name="b",transport="websocket"} 1\n'
        "centrifugo_node_num_clients 0\n"
    )
    assert 3.0 == target.connections(text)
    assert target.connections("centrifugo_node_num_clients 0\n") is None


def test_a_binary_that_is_not_there_says_how_to_install_one(tmp_path: Path) -> None:
    """CENTRIFUGO_BINARY naming nothing is an error that says how to get the pinned version."""
    with pytest.raises(TargetError, match="scripts/setup --with-centrifugo"):
        target.find_centrifugo(environ={"CENTRIFUGO_BINARY": str(tmp_path / "nope")})
    with pytest.raises(TargetError, match=r"6\.9\.1"):
        target.find_centrifugo(environ={"PATH": str(tmp_path)}, cwd=tmp_path, package_dir=tmp_path)


def test_each_user_gets_an_hs256_token_with_subject_and_expiry(tmp_path: Path) -> None:
    """credential_for mints a JWT the server verifies with this run's secret."""
    fake = tmp_path / "centrifugo"
    fake.write_text("#!/bin/sh\necho 'Centrifugo v6.9.1 (Go version: go1.26)'\n")
    fake.chmod(0o755)
    server = target.CentrifugoTarget(binary=fake)
    try:
        token = server.credential_for("alice")
        claims = jwt.decode(token, server._secret, algorithms=["HS256"])
        assert "alice" == claims["sub"]
        assert claims["exp"] > time.time() + 3600
        assert "6.9.1" == server.version
    finally:
        asyncio.run(server.stop())
