"""A cap on open HTTP connections, put in front of aiohttp's protocol factory: aiohttp has none of its own.

Done at the protocol level rather than the socket level because that is where
a connection can be admitted or closed before aiohttp allocates anything for
it, with no accept loop of our own. When the cap is reached, the connection
least recently active is closed to make room, so a flood of idle connections
cannot lock the kubelet's probes out. Idle connections themselves are closed
by aiohttp's keep-alive timeout; one that sends nothing at all is closed here
after the same time, as older aiohttp versions leave those open.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable

from ..serve.conditionlog import ConditionLog

log = logging.getLogger("pod_identity_dns.http")


class ConnectionGate:
    """Open HTTP connections, least recently active first, at most `max_connections`."""

    def __init__(self, max_connections: int, idle_timeout: float):
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.open: OrderedDict[GatedProtocol, None] = OrderedDict()
        self.evicted = 0
        self._full_log = ConditionLog(log)

    def factory(self, make_protocol: Callable[[], asyncio.Protocol]) -> Callable[[], GatedProtocol]:
        return lambda: GatedProtocol(self, make_protocol)

    def admit(self, conn: GatedProtocol) -> None:
        while len(self.open) >= self.max_connections:
            self._full_log(
                "HTTP connection limit (%d) reached: closing the least recently active connections to make room", self.max_connections
            )
            oldest = next(iter(self.open))
            self.open.pop(oldest)
            self.evicted += 1
            oldest.transport.abort()  # frees its descriptor now; a half-sent response is the client's to retry
        self.open[conn] = None

    def touch(self, conn: GatedProtocol) -> None:
        if conn in self.open:
            self.open.move_to_end(conn)


class GatedProtocol(asyncio.Protocol):
    """Passes every event on to aiohttp's protocol, made once the connection is admitted."""

    transport: asyncio.Transport

    def __init__(self, gate: ConnectionGate, make_protocol: Callable[[], asyncio.Protocol]):
        self.gate = gate
        self._make = make_protocol
        self.inner: asyncio.Protocol | None = None
        self._silent: asyncio.TimerHandle | None = None  # until the first byte arrives

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.gate.admit(self)
        self._silent = asyncio.get_running_loop().call_later(self.gate.idle_timeout, transport.close)
        self.inner = self._make()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._silent is not None:
            self._silent.cancel()
            self._silent = None
        self.gate.touch(self)
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.gate.touch(self)
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gate.open.pop(self, None)
        if self._silent is not None:
            self._silent.cancel()
        if self.inner is not None:
            self.inner.connection_lost(exc)
