"""The admin channel's messages: only a server with a virtual clock has the channel.

A client authenticated with the admin token connects to ``/admin`` and sends JSON messages;
each gets one answer. Used by the harness to make a 10-minute gap cost one round trip.
This module holds the messages, the server's side (``serve``) and a client (``advance_clock``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:  # importing this module stays cheap: no websockets until it is used
    from websockets.asyncio.server import ServerConnection

    from reference_server.clock import VirtualClock

log = logging.getLogger("reference_server")


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


async def serve(
    ws: ServerConnection,
    clock: VirtualClock,
    after_advance: Callable[[], None] | Callable[[], Awaitable[None]],
) -> None:
    """The server side of the channel: answer each request; ``after_advance`` runs (a sweep,
    awaited when it is a coroutine function) every time the clock moves, before the answer."""
    async for frame in ws:
        try:
            request = request_decoder.decode(frame)
        except Exception as exc:  # msgspec raises DecodeError or ValidationError
            await ws.send(encoder.encode(AdminError(message=str(exc))), text=True)
            continue
        if isinstance(request, AdvanceClock):
            if request.seconds < 0:
                await ws.send(encoder.encode(AdminError(message="seconds < 0")), text=True)
                continue
            clock.advance(request.seconds)
            log.info("clock advanced by %.3f s", request.seconds)
            swept = after_advance()
            if swept is not None:
                await swept
        reply = ClockState(now=clock.now(), offset=clock.offset)
        await ws.send(encoder.encode(reply), text=True)
