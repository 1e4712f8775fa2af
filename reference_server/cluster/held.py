"""A session whose frames are held until the change that produced them is stored.

The single-node stores commit synchronously, so "stored before sent" holds by construction.
Redis is awaited: a change is queued to the node's writer, and the frames the change produced
(numbered messages, the ack of a processed request) are *claimed* at that moment and released
to the connection only when Redis has answered the commit. Frames no commit claimed (pings,
pongs) follow the released ones, once nothing is pending.
"""

from __future__ import annotations

from typing import Any

from reference_server.protocol import ServerSession


class HeldSession(ServerSession):
    """A ``ServerSession`` whose ``data_to_send()`` returns only stored frames."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pending = 0
        """Commits queued and not answered yet."""
        self._ready: list[bytes] = []

    def claim(self) -> list[bytes]:
        """Take what the session queued so far (and the ack due): the frames of one change."""
        return super().data_to_send()

    def release(self, frames: list[bytes]) -> None:
        """The change that produced ``frames`` is stored: they may be sent."""
        self._ready.extend(frames)

    def data_to_send(self) -> list[bytes]:
        """The released frames, then, if no commit is pending, whatever no commit claimed."""
        ready, self._ready = self._ready, []
        if self.pending == 0:
            ready += super().data_to_send()
        return ready

    @property
    def has_data_to_send(self) -> bool:
        return bool(self._ready) or (self.pending == 0 and super().has_data_to_send)

    def connection_lost(self, now: float) -> None:
        """Frames for the lost connection are dropped: the replay buffer has them."""
        super().connection_lost(now)
        self._ready = []
