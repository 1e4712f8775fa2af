"""A small chat server shaped like the one in the original execution report: the legacy system.

    LEGACY_CHAT_SECRET=... python examples/legacy_chat/server.py [--port 0]

It binds 127.0.0.1 only and prints its URL, ``ws://127.0.0.1:PORT/ws``, as its first stdout
line; its log goes to stderr. It needs Python 3.11 and ``websockets``, nothing else.

What it speaks (the ``legacy_chat`` driver of ``examples/legacy_chat_driver`` speaks exactly
this): JSON text frames, each an object with a ``type``.

- **auth**: the token in the query string, ``/ws?token=USER.HEX`` where HEX is the HMAC-SHA256
  of USER under the secret; a missing or wrong token is refused with HTTP 401.
- on connect the server sends ``{"type": "connection_established", "user_id": USER}``.
- ``{"type": "user_message", "message_id": ID, "content": TEXT}`` is answered on the same
  connection by the agent: ``{"type": "agent_response", "message_id": ID, "content": ...}``,
  or, for a text that starts with ``slowly:``, four ``agent_chunk`` parts 200 ms apart and
  then the ``agent_response`` with the last part (the reply is the parts joined).
- ``{"type": "get_conversation_history"}`` is answered with ``{"type":
  "conversation_history", "messages": [{"role", "content", "message_id"}, ...]}``, oldest
  first; an assistant turn carries the ``message_id`` of the message it answers.
- ``{"type": "get_agent_context"}`` is answered with ``{"type": "agent_context", "context":
  {...}}``: the memory ("my name is X", "remember that K is V"), variables ("set K = V"),
  workflow state and tool history ("what is A + B").
- anything else is answered with ``{"type": "error", "error": CODE, "message": ...}``
  (``malformed_json``, ``unknown_type``, ``invalid_message``, ``binary_frame``).

What it does not have, as the original system did not: no sequence numbers, no
acknowledgements, no replay, no resume token. The session is the token's user: history and
context live in this process, keyed by the user, and a reconnection with the same token finds
them again. A reply is sent on the connection that asked; if that connection is gone, the
agent still finishes and stores the reply, and what could not be sent is dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import re
import sys
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

PATH = "/ws"
SLOW_PREFIX = "slowly:"
STREAM_DELAY_S = 0.2
STREAMED = ("Here is ", "a long answer, ", "streamed ", "in five parts, ")


@dataclass
class UserState:
    """What the server keeps for one user, for as long as the process lives."""

    user_id: str
    history: list[dict[str, str]] = field(default_factory=list)
    memory: dict[str, str] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    tool_history: list[dict[str, str]] = field(default_factory=list)
    messages: int = 0

    def context(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "memory": dict(self.memory),
            "preferences": {},
            "variables": dict(self.variables),
            "workflow_state": {"messages_handled": self.messages},
            "tool_history": [dict(t) for t in self.tool_history],
        }


def user_of(token: str, secret: str) -> str | None:
    """The user a ``USER.HEX`` token names, if its signature is right."""
    user, _, signature = token.rpartition(".")
    if not user:
        return None
    expected = hmac.new(secret.encode(), user.encode(), hashlib.sha256).hexdigest()
    return user if hmac.compare_digest(expected, signature) else None


def agent(state: UserState, text: str) -> list[str]:
    """Update the user's context from ``text`` and return the reply's parts."""
    state.messages += 1
    if text.startswith(SLOW_PREFIX):
        return [*STREAMED, f"about: {text.removeprefix(SLOW_PREFIX).strip()}."]
    if m := re.match(r"my name is (.+)$", text, re.IGNORECASE):
        state.memory["name"] = m[1]
        return [f"Nice to meet you, {m[1]}."]
    if m := re.match(r"remember that (\S+) is (.+)$", text, re.IGNORECASE):
        state.memory[m[1]] = m[2]
        return [f"I will remember that {m[1]} is {m[2]}."]
    if m := re.match(r"set (\S+) = (.+)$", text, re.IGNORECASE):
        state.variables[m[1]] = m[2]
        return [f"{m[1]} is now {m[2]}."]
    if m := re.search(r"what is (\d+) \+ (\d+)", text, re.IGNORECASE):
        result = str(int(m[1]) + int(m[2]))
        state.tool_history.append({"tool": "calculator", "input": m[0], "output": result})
        return [f"{m[1]} + {m[2]} = {result}."]
    return [f"You said: {text}"]


class LegacyChatServer:
    """The users' state and one handler per connection."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.users: dict[str, UserState] = {}

    def _user(self, path: str) -> str | None:
        tokens = parse_qs(urlsplit(path).query).get("token", [])
        return user_of(tokens[0], self.secret) if tokens else None

    def check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse the handshake of a wrong path or token (the only refusal there is)."""
        if urlsplit(request.path).path != PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        if self._user(request.path) is None:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "invalid token\n")
        return None

    async def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        user = self._user(ws.request.path)
        assert user is not None  # check_request refused the others
        state = self.users.setdefault(user, UserState(user))
        log(f"connected {user} from {ws.remote_address}")
        await send(ws, {"type": "connection_established", "user_id": user})
        # Replies run beside the reading loop; when the connection ends they still finish.
        async with asyncio.TaskGroup() as replies:
            with contextlib.suppress(ConnectionClosed):
                async for frame in ws:
                    await self._on_frame(ws, state, frame, replies)
        log(f"disconnected {user} (close code {ws.close_code})")

    async def _on_frame(
        self,
        ws: ServerConnection,
        state: UserState,
        frame: str | bytes,
        replies: asyncio.TaskGroup,
    ) -> None:
        if isinstance(frame, bytes):
            await error(ws, "binary_frame", "frames are JSON text")
            return
        try:
            message = json.loads(frame)
        except ValueError as exc:
            await error(ws, "malformed_json", str(exc))
            return
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "user_message":
            message_id, content = message.get("message_id"), message.get("content")
            if not isinstance(message_id, str) or not isinstance(content, str):
                await error(ws, "invalid_message", "user_message needs message_id and content")
                return
            state.history.append({"role": "user", "content": content, "message_id": message_id})
            replies.create_task(self._reply(ws, state, message_id, content))
        elif kind == "get_conversation_history":
            await send(ws, {"type": "conversation_history", "messages": list(state.history)})
        elif kind == "get_agent_context":
            await send(ws, {"type": "agent_context", "context": state.context()})
        else:
            await error(ws, "unknown_type", f"unknown message type {kind!r}")

    async def _reply(
        self, ws: ServerConnection, state: UserState, message_id: str, text: str
    ) -> None:
        parts = agent(state, text)
        for part in parts[:-1]:
            await send(ws, {"type": "agent_chunk", "message_id": message_id, "content": part})
            await asyncio.sleep(STREAM_DELAY_S)
        reply = "".join(parts)
        state.history.append({"role": "assistant", "content": reply, "message_id": message_id})
        await send(ws, {"type": "agent_response", "message_id": message_id, "content": parts[-1]})


async def send(ws: ServerConnection, message: dict[str, Any]) -> None:
    """Send, or drop the message if the connection is gone (there is nothing to replay)."""
    with contextlib.suppress(ConnectionClosed):
        await ws.send(json.dumps(message))


async def error(ws: ServerConnection, code: str, text: str) -> None:
    await send(ws, {"type": "error", "error": code, "message": text})


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def main(port: int, secret: str) -> None:
    server = LegacyChatServer(secret)
    async with serve(
        server.handle, "127.0.0.1", port, process_request=server.check_request
    ) as running:
        bound = running.sockets[0].getsockname()[1]
        print(f"ws://127.0.0.1:{bound}{PATH}", flush=True)
        await running.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    args = parser.parse_args()
    secret = os.environ.get("LEGACY_CHAT_SECRET", "")
    if not secret:
        sys.exit("LEGACY_CHAT_SECRET is not set: it signs the users' tokens")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.port, secret))
