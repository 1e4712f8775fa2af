"""A client and a server session joined in memory, over a link that can lose frames.

For tests (ours and yours): every frame goes through the real codec, both state machines run
exactly as they do over sockets, and the link can be cut at any point, on both sides (a drop)
or on the client's side only (a half-open connection the server has not noticed yet).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable

from . import codec
from .client import ClientProtocol
from .events import (
    ClientEvent,
    Delivered,
    HeartbeatTimedOut,
    RequestReceived,
    ResumeAccepted,
    ResumeRefused,
    SessionEvent,
)
from .messages import ClientRequest, Hello, Rejected, ReplyChunk, Resume, ServerSequenced
from .session import ServerSession, SessionConfig, negotiate_version
from .tokens import TokenFactory, new_token
from .transitions import ClientState, SessionState

_LIVE = frozenset({ClientState.CONNECTING, ClientState.ATTACHED, ClientState.RESUMING})


def counting_tokens(prefix: str = "token") -> TokenFactory:
    """A deterministic token factory, for tests that must be reproducible."""
    counter = itertools.count(1)
    return lambda: f"{prefix}-{next(counter)}"


class ProtocolPair:
    """One client and the server side of its session, in memory."""

    def __init__(
        self,
        *,
        config: SessionConfig | None = None,
        user_id: str = "user-1",
        client_ip: str = "127.0.0.1",
        now: float = 0.0,
        token_factory: TokenFactory = new_token,
        client: ClientProtocol | None = None,
    ) -> None:
        self.config = config or SessionConfig()
        self.user_id = user_id
        self.client_ip = client_ip
        self.now = now
        self.token_factory = token_factory
        self.client = client or ClientProtocol()
        self.server: ServerSession | None = None
        self.to_server: deque[bytes] = deque()
        self.to_client: deque[bytes] = deque()
        self.link_up = False
        self._server_attached = False  # has the server side of this link seen hello/resume?
        self.client_events: list[ClientEvent] = []
        self.server_events: list[SessionEvent] = []
        self.resume_results: list[ResumeAccepted | ResumeRefused] = []
        self.rejections: list[Rejected] = []
        self.sent: list[ServerSequenced] = []
        """Every numbered message the server sent, in order."""
        self._sessions = itertools.count(1)

    # --- what the client saw -------------------------------------------------------------

    @property
    def delivered(self) -> list[ServerSequenced]:
        """Numbered server messages the client delivered, in order."""
        return [e.message for e in self.client_events if isinstance(e, Delivered)]

    @property
    def processed(self) -> list[ClientRequest]:
        """Client requests the server processed (not counting duplicates), in order."""
        return [e.request for e in self.server_events if isinstance(e, RequestReceived)]

    # --- connections ---------------------------------------------------------------------

    def connect(self) -> None:
        """Open a new link and send hello."""
        self._open_link()
        self.client.hello()
        self.flush()

    def reconnect(self) -> None:
        """Open a new link and resume the client's session."""
        self._open_link()
        self.client.resume()
        self.flush()

    def drop(self) -> None:
        """Cut the link on both sides; frames in flight are lost."""
        self._cut_client_side()
        server = self.server
        if server is not None and self._server_attached and server.state is SessionState.ATTACHED:
            server.connection_lost(self.now)
        self._server_attached = False

    def drop_client_side(self) -> None:
        """Cut the link as the client sees it; the server still thinks it is attached."""
        self._cut_client_side()
        self._server_attached = False

    def _cut_client_side(self) -> None:
        self.link_up = False
        self.to_server.clear()
        self.to_client.clear()
        if self.client.state in _LIVE:
            self.client.connection_lost()

    def _open_link(self) -> None:
        self.link_up = True
        self._server_attached = False
        self.to_server.clear()
        self.to_client.clear()

    # --- moving frames -------------------------------------------------------------------

    def flush(self) -> None:
        """Move what each side wants to send onto the link."""
        if self.link_up:
            self.to_server.extend(self.client.data_to_send())
        else:
            self.client.data_to_send()
        if self.server is not None:
            frames = self.server.data_to_send()
            if self.link_up and self._server_attached:
                self.to_client.extend(frames)

    def deliver_to_server(self, limit: int | None = None) -> int:
        """Deliver up to ``limit`` frames (all by default) to the server; return how many."""
        count = 0
        while self.to_server and (limit is None or count < limit):
            self._server_receive(self.to_server.popleft())
            count += 1
            self.flush()
        return count

    def deliver_to_client(self, limit: int | None = None) -> int:
        """Deliver up to ``limit`` frames (all by default) to the client; return how many."""
        count = 0
        while self.to_client and (limit is None or count < limit):
            self.client_events.extend(self.client.receive(self.to_client.popleft()))
            count += 1
            if self.client.state not in _LIVE:  # rejected or told to go: the server closes
                self._cut_client_side()
                break
        self.flush()
        return count

    def settle(self, max_rounds: int = 1000) -> None:
        """Deliver in both directions until nothing is in flight."""
        for _ in range(max_rounds):
            self.flush()
            if not (self.to_server or self.to_client):
                return
            self.deliver_to_server()
            self.deliver_to_client()
        raise RuntimeError("pair did not settle")

    def advance(self, seconds: float) -> None:
        """Let time pass on the server's clock."""
        self.now += seconds
        if self.server is None:
            return
        events = self.server.tick(self.now)
        self.server_events.extend(events)
        if any(isinstance(e, HeartbeatTimedOut) for e in events):
            self.drop()
        self.flush()

    # --- the server's application --------------------------------------------------------

    def server_send(self, text: str, *, in_reply_to: str = "push") -> ServerSequenced:
        """Have the server's application send one numbered message."""
        assert self.server is not None, "connect() first"
        message = self.server.send(
            lambda seq: ReplyChunk(
                seq=seq, in_reply_to=in_reply_to, chunk_index=0, text=text, final=True
            )
        )
        self.sent.append(message)
        self.flush()
        return message

    def answer_requests(
        self, reply: Callable[[ClientRequest], str] = lambda r: f"re:{r.id}"
    ) -> None:
        """Answer every request the server received and has not answered yet, one chunk each."""
        assert self.server is not None
        answered = {m.in_reply_to for m in self.sent if isinstance(m, ReplyChunk)}
        for request in self.processed:
            if request.id not in answered:
                self.server_send(reply(request), in_reply_to=request.id)

    # --- the server's connection handling ------------------------------------------------

    def _server_receive(self, frame: bytes) -> None:
        message = codec.decode_client(frame)
        if not self._server_attached:
            if isinstance(message, Hello):
                self._open_session(message)
            elif isinstance(message, Resume):
                self._resume_session(message)
            else:
                raise AssertionError(f"first frame was {type(message).__name__}")
            return
        assert self.server is not None
        self.server_events.extend(self.server.receive(message, self.now))

    def _open_session(self, hello: Hello) -> None:
        assert negotiate_version(hello.versions) is not None
        self.server = ServerSession(
            session_id=f"s{next(self._sessions)}",
            user_id=self.user_id,
            epoch="e1",
            client_ip=self.client_ip,
            now=self.now,
            config=self.config,
            token_factory=self.token_factory,
        )
        self.sent = []
        self.server.welcome(hello)
        self._server_attached = True

    def _resume_session(self, resume: Resume) -> None:
        assert self.server is not None
        assert self.server.session_id == resume.session_id
        result = self.server.resume(
            resume, now=self.now, user_id=self.user_id, client_ip=self.client_ip
        )
        self.resume_results.append(result)
        if isinstance(result, ResumeAccepted):
            self._server_attached = True
            return
        self.rejections.append(result.rejected)
        self.to_client.append(codec.encode(result.rejected))
