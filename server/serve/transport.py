"""UDP and TCP adapters: bytes in from a socket, the answer function, bytes out.

They hold no DNS logic. TCP follows RFC 7766: 2-byte length framing, several
pipelined queries per connection answered in order, an idle timeout, and a cap
on open connections.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("pod_identity_dns.transport")

# (query bytes, over TCP?, peer address) -> reply bytes or None
Handler = Callable[[bytes, bool, tuple], "bytes | None"]


class UdpProtocol(asyncio.DatagramProtocol):
    transport: asyncio.DatagramTransport  # set by connection_made, before any datagram

    def __init__(self, handler: Handler):
        self.handler = handler

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            reply = self.handler(data, False, addr)
        except Exception:  # a bug for one packet must not stop the others
            log.exception("internal error answering a UDP query from %s", addr)
            return
        if reply is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP socket error: %s", exc)


class TcpConnections:
    """Shared state of one TCP listener: open connections, their limit and idle timeout."""

    def __init__(self, handler: Handler, idle_timeout: float, max_connections: int):
        self.handler = handler
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.open: set[TcpProtocol] = set()
        self.draining = False  # shutting down: close each connection once it holds no partial query

    def protocol(self) -> TcpProtocol:
        return TcpProtocol(self)

    async def drain(self, timeout: float) -> int:
        """At shutdown, once the listener is closed: each connection closes (after writing its
        answers) as soon as it holds no partial query; after `timeout` the rest are cut. Returns how many."""
        self.draining = True
        for conn in list(self.open):
            if not conn.buffer:
                conn.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.open and loop.time() < deadline:
            await asyncio.sleep(0.01)
        cut = len(self.open)
        for conn in list(self.open):
            conn.transport.abort()
        return cut


class TcpProtocol(asyncio.Protocol):
    transport: asyncio.Transport  # set by connection_made, before anything else
    peer: tuple = ()

    def __init__(self, shared: TcpConnections):
        self.shared = shared
        self.buffer = bytearray()
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        if len(self.shared.open) >= self.shared.max_connections:
            log.warning("TCP connection limit (%d) reached: closing %s", self.shared.max_connections, self.peer)
            transport.abort()
            return
        self.shared.open.add(self)
        self._arm_idle()

    def _arm_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.idle = asyncio.get_running_loop().call_later(self.shared.idle_timeout, self.close)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        answered = False
        while len(self.buffer) >= 2:
            size = (self.buffer[0] << 8) | self.buffer[1]
            if len(self.buffer) < 2 + size:
                break
            query = bytes(self.buffer[2 : 2 + size])
            del self.buffer[: 2 + size]
            answered = True
            try:
                reply = self.shared.handler(query, True, self.peer)
            except Exception:
                log.exception("internal error answering a TCP query from %s", self.peer)
                continue
            if reply is not None:
                self.transport.write(len(reply).to_bytes(2, "big") + reply)
        if self.shared.draining and not self.buffer:
            self.close()
        elif answered:
            self._arm_idle()

    def pause_writing(self) -> None:
        # A client that sends but does not read must not grow our buffers.
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self.shared.open.discard(self)
        if self.idle is not None:
            self.idle.cancel()
