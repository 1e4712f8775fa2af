"""Application messages (§11): agent turns, conversation history and agent context.

The session's state machine says which requests are new (``RequestReceived``); this module
answers them: the agent's reply as numbered tool calls and chunks, history pages and the
context read from the store. Every answer is committed, with what it changed, before it is sent.
"""

from __future__ import annotations

import time

from reference_server import agent
from reference_server.clock import Clock
from reference_server.faults import Chunk, FaultPlan
from reference_server.metrics import Metrics
from reference_server.protocol import (
    ByeReceived,
    CloseCode,
    DuplicateRequest,
    RequestReceived,
    SessionEvent,
)
from reference_server.protocol.messages import (
    AgentContext,
    ConversationHistory,
    GetAgentContext,
    GetConversationHistory,
    HistoryEntry,
    ReplyChunk,
    ToolCall,
    UserMessage,
)
from reference_server.registry import SessionHost, SessionRegistry
from reference_server.store import Store


class Application:
    """Answers the requests of every session."""

    def __init__(
        self,
        *,
        registry: SessionRegistry,
        store: Store,
        clock: Clock,
        metrics: Metrics,
        faults: FaultPlan,
    ) -> None:
        self.registry = registry
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.faults = faults

    def react(self, host: SessionHost, events: list[SessionEvent]) -> None:
        """Act on what one client frame led to; store the change even when there was none."""
        for event in events:
            if isinstance(event, RequestReceived):
                self._answer(host, event)
            elif isinstance(event, DuplicateRequest):
                self.registry.commit(host, new_ids=())
            elif isinstance(event, ByeReceived):
                self.registry.forget(host, "closed", self.clock.now())
                if host.ws is not None:
                    self.registry.spawn(host.ws.close(CloseCode.NORMAL, "bye"))
                host.ws = None
        if not events:
            self.registry.commit(host)

    def _answer(self, host: SessionHost, event: RequestReceived) -> None:
        request = event.request
        if isinstance(request, UserMessage):
            self._turn(host, request)
        elif isinstance(request, GetConversationHistory):
            self._history(host, request)
        elif isinstance(request, GetAgentContext):
            self._context(host, request)

    def _turn(self, host: SessionHost, request: UserMessage) -> None:
        """§11.1: tool calls first, then the reply in chunks, the last one final."""
        session = host.session
        turn = agent.respond(host.context, request.id, request.text)
        for call in turn.tool_calls:
            session.send_numbered(ToolCall(seq=session.next_seq, in_reply_to=request.id, call=call))
        last = len(turn.chunks) - 1
        chunks = [Chunk(index, text, index == last) for index, text in enumerate(turn.chunks)]
        for chunk in self.faults.reply_chunks(session, chunks):
            session.send_numbered(
                ReplyChunk(
                    seq=session.next_seq,
                    in_reply_to=request.id,
                    chunk_index=chunk.chunk_index,
                    text=chunk.text,
                    final=chunk.final,
                )
            )
        history = [
            HistoryEntry(
                index=host.history_len, role="user", message_id=request.id, text=request.text
            ),
            HistoryEntry(
                index=host.history_len + 1, role="agent", message_id=request.id, text=turn.reply
            ),
        ]
        host.history_len += 2
        host.context = turn.context
        self.registry.commit(
            host, new_ids=((request.id, request.seq),), history=history, context=turn.context
        )

    def _history(self, host: SessionHost, request: GetConversationHistory) -> None:
        """§11.2: one page, read from the store."""
        started = time.perf_counter()
        page = self.store.history(
            host.session.session_id, before=request.before, limit=max(0, request.limit)
        )
        page = self.faults.history_page(host.session, page)
        elapsed = time.perf_counter() - started
        self.metrics.history_latency.labels("history").observe(elapsed)
        host.session.send(
            lambda seq: ConversationHistory(
                seq=seq,
                in_reply_to=request.id,
                entries=page.entries,
                total=page.total,
                next_before=page.next_before,
                retrieval_ms=round(elapsed * 1000, 3),
            )
        )
        self.registry.commit(host, new_ids=((request.id, request.seq),))

    def _context(self, host: SessionHost, request: GetAgentContext) -> None:
        """§11.3: the agent context as stored."""
        started = time.perf_counter()
        context = self.store.context(host.session.session_id) or agent.new_context()
        elapsed = time.perf_counter() - started
        self.metrics.history_latency.labels("agent_context").observe(elapsed)
        host.session.send(
            lambda seq: AgentContext(
                seq=seq,
                in_reply_to=request.id,
                context=context,
                retrieval_ms=round(elapsed * 1000, 3),
            )
        )
        self.registry.commit(host, new_ids=((request.id, request.seq),))
