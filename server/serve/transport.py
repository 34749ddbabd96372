"""The handler shape every listener calls, and the UDP adapter.

They hold no DNS logic. A handler takes (query bytes, over TCP?, peer address)
and returns the reply. Over UDP that is bytes or None (no reply). Over TCP it
may also be an async iterator of messages (an async generator, for zone
transfers): the connection writes each one framed, waiting for the socket to
drain between them, and answers later pipelined queries after the last one
(see tcp.py). Each message is a whole DNS message of at most 65,535 bytes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from .tcp import TcpProtocol
from .tcppool import CLOSE_REASONS, TcpConnections, TcpLimits

log = logging.getLogger("pod_identity_dns.transport")

Reply = bytes | None | AsyncIterator[bytes]
# (query bytes, over TCP?, peer address) -> reply bytes, None, or (TCP only) an async iterator of messages
Handler = Callable[[bytes, bool, tuple], Reply]

# A UDP query is read into at most this many bytes by either front end; a longer one reaches the handler cut
# short, which the answer path always answers FORMERR (its counts promise more than is there). DNS queries
# are a few hundred bytes (EDNS padding, cookies and TSIG included); the batched front end's slots are this big.
UDP_QUERY_MAX = 4096

__all__ = [
    "CLOSE_REASONS",
    "UDP_QUERY_MAX",
    "Handler",
    "Reply",
    "TcpConnections",
    "TcpLimits",
    "TcpProtocol",
    "UdpProtocol",
    "is_stream",
    "on_first",
]


def is_stream(reply: Reply) -> bool:
    """True when `reply` is a stream of messages rather than one message or None."""
    return reply is not None and not isinstance(reply, (bytes, bytearray, memoryview))


async def on_first(messages: AsyncIterator[bytes], first: Callable[[bytes], None]) -> AsyncIterator[bytes]:
    """`messages`, calling `first(message)` when the first arrives (for wrappers that count or log replies)."""
    seen = False
    try:
        async for message in messages:
            if not seen:
                seen = True
                first(message)
            yield message
    finally:
        close = getattr(messages, "aclose", None)
        if close is not None:
            await close()


class UdpProtocol(asyncio.DatagramProtocol):
    """One UDP listener: each datagram is a query, the handler's bytes are the reply."""

    transport: asyncio.DatagramTransport  # set by connection_made, before any datagram

    def __init__(self, handler: Handler):
        self.handler = handler

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        if len(data) > UDP_QUERY_MAX:
            data = data[:UDP_QUERY_MAX]  # as the batched front end reads it: see UDP_QUERY_MAX
        try:
            reply = self.handler(data, False, addr)
            if reply is not None:
                self.transport.sendto(reply, addr)  # type: ignore[arg-type]  # a stream here is a bug: logged below
        except Exception:  # a bug for one packet must not stop the others
            log.exception("internal error answering a UDP query from %s", addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP socket error: %s", exc)
