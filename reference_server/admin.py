"""The admin channel's messages: only a server with a virtual clock has the channel.

A client authenticated with the admin token connects to ``/admin`` and sends JSON messages;
each gets one answer. Used by the harness to make a 10-minute gap cost one round trip.
"""

from __future__ import annotations

import asyncio

import msgspec


class _Admin(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", forbid_unknown_fields=True
):
    pass


class AdvanceClock(_Admin, tag="advance_clock", frozen=True):
    """Move the server's clock forward; expired sessions are swept before the answer."""

    seconds: float


class GetClock(_Admin, tag="get_clock", frozen=True):
    """Ask for the server's time."""


class ClockState(_Admin, tag="clock", frozen=True):
    """The server's time after the request, and the total offset from real time."""

    now: float
    offset: float


class AdminError(_Admin, tag="admin_error", frozen=True):
    """The admin request was not understood."""

    message: str


AdminRequest = AdvanceClock | GetClock
AdminReply = ClockState | AdminError

request_decoder: msgspec.json.Decoder[AdminRequest] = msgspec.json.Decoder(AdminRequest)
reply_decoder: msgspec.json.Decoder[AdminReply] = msgspec.json.Decoder(AdminReply)
encoder = msgspec.json.Encoder()


async def advance_clock(
    url: str, admin_token: str, seconds: float, *, timeout: float = 5.0
) -> ClockState:
    """Advance a server's virtual clock over its admin channel; ``url`` is any of its URLs."""
    from urllib.parse import urlsplit, urlunsplit

    from websockets.asyncio.client import connect

    parts = urlsplit(url)
    admin_url = urlunsplit((parts.scheme, parts.netloc, "/admin", "", ""))
    async with asyncio.timeout(timeout):
        async with connect(
            admin_url,
            additional_headers={"Authorization": f"Bearer {admin_token}"},
            proxy=None,
            ping_interval=None,
        ) as ws:
            await ws.send(encoder.encode(AdvanceClock(seconds=float(seconds))), text=True)
            reply = reply_decoder.decode(await ws.recv(decode=False))
    if isinstance(reply, AdminError):
        raise ValueError(reply.message)
    return reply
