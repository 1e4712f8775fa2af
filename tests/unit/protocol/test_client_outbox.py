"""``ClientProtocol.has_data_to_send`` says exactly whether ``data_to_send`` has a frame."""

from __future__ import annotations

from reference_server.protocol import ClientProtocol
from reference_server.protocol.pair import ProtocolPair


def _agrees(client: ClientProtocol) -> list[tuple[bool, bool, int]]:
    """(include_ack, what has_data_to_send said, frames data_to_send then gave)."""
    seen = []
    for include_ack in (False, True):
        said = client.has_data_to_send(include_ack=include_ack)
        seen.append((include_ack, said, len(client.data_to_send(include_ack=include_ack))))
    return seen


def test_nothing_queued_before_hello_then_the_hello() -> None:
    """A fresh client has nothing to send; after hello() it has the hello frame."""
    client = ClientProtocol()
    assert [(False, False, 0), (True, False, 0)] == _agrees(client)
    client.hello()
    assert client.has_data_to_send(include_ack=False)
    assert 1 == len(client.data_to_send(include_ack=False))
    assert not client.has_data_to_send()


def test_a_due_ack_counts_only_when_acks_are_included() -> None:
    """After deliveries, the due ack is data to send with include_ack and not without."""
    pair = ProtocolPair()
    pair.connect()
    pair.settle()
    pair.server_send("one")
    pair.server_send("two")
    pair.flush()
    pair.deliver_to_client()  # its flush takes the ack: deliver again without flushing
    pair.server_send("three")
    if pair.server is not None:
        pair.to_client.extend(pair.server.data_to_send())
    for frame in list(pair.to_client):
        pair.client.receive(frame)
    pair.to_client.clear()
    assert pair.client.has_data_to_send()
    assert not pair.client.has_data_to_send(include_ack=False)
    assert [(False, False, 0), (True, True, 1)] == _agrees(pair.client)


def test_a_request_is_data_to_send_with_or_without_acks() -> None:
    """A queued request is data to send either way, and data_to_send empties the outbox."""
    pair = ProtocolPair()
    pair.connect()
    pair.settle()
    pair.client.send_user_message("hello")
    assert pair.client.has_data_to_send(include_ack=False)
    assert pair.client.has_data_to_send(include_ack=True)
    assert pair.client.data_to_send()
    assert not pair.client.has_data_to_send()
