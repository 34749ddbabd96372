"""Every open DNS TCP connection of the server, across its listeners: the limits, who makes room, the drain.

RFC 7766 §6.2.3 lets a server close connections under pressure. When the
server is full, a new connection is not refused: the connection idle the
longest is closed to make room (then one waiting on a half-sent query; never
one in the middle of a reply stream). A client at its own limit makes room
among its own connections the same way. Each connection also has a lifetime,
and every close is counted by reason.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .conditionlog import ConditionLog
from .tcp import TcpProtocol

if TYPE_CHECKING:
    from .transport import Handler

log = logging.getLogger("pod_identity_dns.transport")

# Why connections closed: the label values of poddns_tcp_closed_total.
CLOSE_REASONS = (
    "client",  # the client closed it (or reset it)
    "idle",  # --tcp-idle-timeout passed without a query
    "lifetime",  # --tcp-max-lifetime reached
    "evicted",  # closed while idle to make room for a new connection
    "full",  # refused: the server was full and no connection could make room
    "per_client",  # refused: the client was at --tcp-max-per-client and none of its own could make room
    "stalled",  # a reply stream waited one idle timeout for a client that stopped reading
    "error",  # a reply stream failed
    "shutdown",  # closed by the drain at shutdown
)
CUT_FLUSH_SECONDS = 0.5  # at the end of the drain, what the cut connections wrote (whole messages) may still go out


@dataclass(frozen=True)
class TcpLimits:
    idle_timeout: float = 10.0
    max_connections: int = 1000  # all listeners together
    max_per_client: int = 64  # connections from one client address
    max_lifetime: float = 120.0  # seconds; 0: no limit


class TcpConnections:
    """Open connections, the limits they live under, and the closes counted by reason."""

    def __init__(self, limits: TcpLimits):
        self.limits = limits
        self.open: set[TcpProtocol] = set()
        self._idle: OrderedDict[TcpProtocol, None] = OrderedDict()  # holding no query, the longest idle first
        self._by_client: dict[str, set[TcpProtocol]] = {}
        self.closed = dict.fromkeys(CLOSE_REASONS, 0)
        self.draining = False
        self._admitted = 0  # connections admitted so far: the age order among equal activity times
        self._full_log = ConditionLog(log)
        self._client_log = ConditionLog(log)

    def protocol_factory(self, handler: Handler) -> Callable[[], TcpProtocol]:
        """The protocol factory of one listener; every listener shares this pool."""
        return functools.partial(TcpProtocol, self, handler)

    # -- called by the connections ----------------------------------------

    def admit(self, conn: TcpProtocol) -> bool:
        """A new connection: make room if needed; False if it was refused (and closed)."""
        limits = self.limits
        own = self._by_client.get(conn.client)
        if own is not None and len(own) >= limits.max_per_client:
            victim = _longest_waiting(own)
            if victim is None:
                self._client_log(
                    "TCP connections from %s reached the per-client limit (%d) and none can make room: closing new ones",
                    conn.client,
                    limits.max_per_client,
                )
                conn.refuse("per_client")
                return False
            self._client_log(
                "TCP connections from %s reached the per-client limit (%d): closing its longest idle ones to make room",
                conn.client,
                limits.max_per_client,
            )
            victim.close_now("evicted")
        if len(self.open) >= limits.max_connections:
            victim = next(iter(self._idle), None) or _longest_waiting(self.open)
            if victim is None:
                self._full_log(
                    "TCP connection limit (%d) reached and every connection is sending a reply stream: closing new ones",
                    limits.max_connections,
                )
                conn.refuse("full")
                return False
            self._full_log("TCP connection limit (%d) reached: closing the longest idle connections to make room", limits.max_connections)
            victim.close_now("evicted")
        conn.serial, self._admitted = self._admitted, self._admitted + 1
        self.open.add(conn)
        self._by_client.setdefault(conn.client, set()).add(conn)
        self._idle[conn] = None
        return True

    def activity(self, conn: TcpProtocol, idle: bool) -> None:
        """`conn` answered or received something: now idle (holding no query) or not."""
        if conn not in self.open:
            return
        if idle:
            self._idle[conn] = None
            self._idle.move_to_end(conn)
        else:
            self._idle.pop(conn, None)

    def release(self, conn: TcpProtocol, reason: str) -> None:
        """`conn` is closing (once per connection): it no longer counts, and its reason is counted."""
        self.closed[reason] += 1
        if conn in self.open:
            self.open.discard(conn)
            self._idle.pop(conn, None)
            own = self._by_client.get(conn.client)
            if own is not None:
                own.discard(conn)
                if not own:
                    del self._by_client[conn.client]

    # -- shutdown ----------------------------------------------------------

    async def drain(self, timeout: float) -> int:
        """At shutdown, once the listeners are closed: each connection closes (after writing its
        answers and any reply stream) as soon as it holds no partial query; after `timeout` the
        rest are cut, a stream between two messages. Returns how many were cut."""
        self.draining = True
        for conn in list(self.open):
            conn.retire("shutdown", deadline=False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.open and loop.time() < deadline:
            await asyncio.sleep(0.01)
        cut = list(self.open)
        for conn in cut:
            conn.close_now("shutdown")
        deadline = loop.time() + CUT_FLUSH_SECONDS
        while any(not conn.lost for conn in cut) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for conn in cut:
            if not conn.lost:
                conn.transport.abort()
        return len(cut)


def _longest_waiting(conns: set[TcpProtocol]) -> TcpProtocol | None:
    """The connection that can make room: idle the longest, else waiting the longest on a partial query."""
    candidates = [conn for conn in conns if conn.stream is None and conn.closed_reason is None]
    if not candidates:
        return None
    # The loop's clock has one value per loop turn: ties go to the older connection.
    return min(candidates, key=lambda conn: (bool(conn.buffer), conn.active_at, conn.serial))
