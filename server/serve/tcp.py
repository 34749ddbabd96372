"""One DNS TCP connection (RFC 7766): 2-byte framing, pipelined queries answered in order, reply streams.

A reply that is a stream of messages (transport.py) is written one framed
message at a time, waiting for the socket to drain whenever the transport asks
us to pause, so a transfer of thousands of messages is never buffered whole and
the event loop keeps answering others. Queries that arrive meanwhile wait in
the buffer and are answered after the stream, in order.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .tcppool import TcpConnections
    from .transport import Handler

log = logging.getLogger("pod_identity_dns.transport")

MAX_MESSAGE = 65535
# Unparsed bytes held while a stream is sent (two largest queries): beyond that, reading pauses.
MAX_BACKLOG = 2 * (2 + MAX_MESSAGE)
CLOSE_GRACE = 2.0  # a connection we closed has this long to flush what it holds before it is cut


class TcpProtocol(asyncio.Protocol):
    transport: asyncio.Transport  # set by connection_made, before anything else
    _loop: asyncio.AbstractEventLoop  # likewise

    def __init__(self, pool: TcpConnections, handler: Handler):
        self.pool = pool
        self.handler = handler
        self.buffer = bytearray()
        self.peer: tuple = ()
        self.client = ""  # the peer's address without the port: what per-client limits count
        self.active_at = 0.0  # loop time of the connection or of its last answer
        self.serial = 0  # order of admission, set by the pool
        self.stream: asyncio.Task | None = None  # sending a reply stream
        self.retiring: str | None = None  # close for this reason as soon as no query is pending
        self.closed_reason: str | None = None  # set once, when the close began
        self.lost = False
        self._eof = False  # the client sends nothing more
        self._timer: asyncio.TimerHandle | None = None  # idle timeout, fired at or before _idle_deadline
        self._idle_deadline = 0.0
        self._lifetime: asyncio.TimerHandle | None = None
        self._cut: asyncio.TimerHandle | None = None
        self._paused_for: set[str] = set()  # why reading is paused: "write", "backlog"
        self._write_paused = False
        self._writable: asyncio.Future | None = None

    # -- asyncio callbacks ---------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.peer = transport.get_extra_info("peername") or ()
        self.client = str(self.peer[0]) if self.peer else ""
        self._loop = loop = asyncio.get_running_loop()
        self.active_at = loop.time()
        if not self.pool.admit(self):
            return
        self._arm_idle()
        if self.pool.limits.max_lifetime > 0:
            self._lifetime = loop.call_later(self.pool.limits.max_lifetime, self.retire, "lifetime")

    def data_received(self, data: bytes) -> None:
        if self.closed_reason is not None:
            return
        self.buffer += data
        if self.stream is not None:
            if len(self.buffer) > MAX_BACKLOG:
                self._pause_reading("backlog")
            return
        self._answer_buffered()

    def eof_received(self) -> bool:
        # The client has sent its last query: answer what is complete (and any stream), then close.
        self._eof = True
        if self.stream is None:
            self.retire("client")
        elif self.retiring is None:
            self.retiring = "client"
        return self.closed_reason is None  # True keeps the transport open for our answers

    def pause_writing(self) -> None:
        # A client that sends but does not read must not grow our buffers.
        self._write_paused = True
        self._pause_reading("write")

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._resume_reading("write")

    def connection_lost(self, exc) -> None:
        self.lost = True
        if self.closed_reason is None:
            self.closed_reason = "client"
            self.pool.release(self, "client")
        for timer in (self._timer, self._lifetime, self._cut):
            if timer is not None:
                timer.cancel()
        if self.stream is not None:
            self.stream.cancel()

    # -- answering -------------------------------------------------------------

    def _answer_buffered(self) -> None:
        """Answer every complete query in the buffer, in order; a stream answers the rest when it ends."""
        buffer = self.buffer
        answered = False
        while len(buffer) >= 2:
            size = (buffer[0] << 8) | buffer[1]
            if len(buffer) < 2 + size:
                break
            query = bytes(buffer[2 : 2 + size])
            del buffer[: 2 + size]
            answered = True
            try:
                reply = self.handler(query, True, self.peer)
            except Exception:
                log.exception("internal error answering a TCP query from %s", self.peer)
                continue
            if reply is None:
                continue
            if reply.__class__ is bytes:
                self.transport.write(len(reply).to_bytes(2, "big") + reply)
                continue
            self._start_stream(reply)
            return
        if answered:
            self.active_at = self._loop.time()
        self._after_answers(answered)

    def _after_answers(self, answered: bool) -> None:
        if self.closed_reason is not None:
            return
        if self.retiring is not None and (not self.buffer or self._eof):
            self.close_now(self.retiring)
            return
        self.pool.activity(self, idle=not self.buffer)
        if self.retiring is not None:
            if self._timer is None:  # what it has begun sending gets one more idle timeout
                self._arm_idle()
        elif answered:
            self._arm_idle()

    def _start_stream(self, messages) -> None:
        self._cancel_idle()
        self.pool.activity(self, idle=False)
        self.stream = self._loop.create_task(self._send_stream(messages))

    async def _send_stream(self, messages) -> None:
        count = 0
        try:
            async for message in messages:
                if self.closed_reason is not None:
                    return
                if not isinstance(message, (bytes, bytearray)) or len(message) > MAX_MESSAGE:
                    raise ValueError(f"message {count + 1} of the stream is not a DNS message of at most {MAX_MESSAGE} bytes")
                # A whole message per write: a stream that fails or is cut leaves no half message behind.
                self.transport.write(len(message).to_bytes(2, "big") + message)
                count += 1
                if self._write_paused:
                    await self._drained()
                else:  # the socket took it all: still let the loop answer others between messages
                    await asyncio.sleep(0)
        except TimeoutError:
            log.debug("TCP client %s stopped reading a reply stream after %d messages: closing", self.peer, count)
            self.close_now("stalled")
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the reply stream to %s failed after %d messages: closing the connection", self.peer, count)
            self.close_now("error")
            return
        finally:
            close = getattr(messages, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception:
                    log.exception("closing the reply stream to %s failed", self.peer)
            self.stream = None
        if self.closed_reason is None:
            self.active_at = self._loop.time()
            self._resume_reading("backlog")
            self._answer_buffered()
            if self.stream is None and self.closed_reason is None and self._timer is None:
                self._arm_idle()

    async def _drained(self) -> None:
        """Until the transport has room again; TimeoutError if the client reads nothing for an idle timeout."""
        self._writable = self._loop.create_future()
        try:
            await asyncio.wait_for(self._writable, self.pool.limits.idle_timeout)
        finally:
            self._writable = None

    # -- closing ---------------------------------------------------------------

    def retire(self, reason: str, deadline: bool = True) -> None:
        """Close for `reason` once no query is pending (at once if idle). With `deadline`, a pending
        query gets one idle timeout to arrive and be answered; a running stream runs to its end."""
        if self.retiring is not None or self.closed_reason is not None:
            return
        self.retiring = reason
        if self.stream is not None:
            return
        if not self.buffer or self._eof:
            self.close_now(reason)
        elif deadline:
            self._arm_idle()

    def close_now(self, reason: str) -> None:
        """Close (flushing whole messages already written), counted under `reason`; a stream stops here."""
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        self.pool.release(self, reason)
        for timer in (self._timer, self._lifetime):
            if timer is not None:
                timer.cancel()
        if self.stream is not None and self.stream is not asyncio.current_task():
            self.stream.cancel()
        self.transport.close()
        if not self.lost:  # a client that does not read cannot keep it open
            self._cut = self._loop.call_later(CLOSE_GRACE, self.transport.abort)

    def refuse(self, reason: str) -> None:
        """Refused at connect: reset at once, nothing to flush."""
        self.closed_reason = reason
        self.pool.release(self, reason)
        self.transport.abort()

    # -- timers and flow control ------------------------------------------------

    def _arm_idle(self) -> None:
        # Only the deadline moves on each answer: the timer, once set, re-arms itself when it fires
        # early, which saves a timer per answer on a busy connection.
        self._idle_deadline = self._loop.time() + self.pool.limits.idle_timeout
        if self._timer is None:
            self._timer = self._loop.call_at(self._idle_deadline, self._idle_expired)

    def _cancel_idle(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _idle_expired(self) -> None:
        self._timer = None
        if self.stream is not None:
            return
        if self._loop.time() < self._idle_deadline:
            self._timer = self._loop.call_at(self._idle_deadline, self._idle_expired)
            return
        self.close_now(self.retiring or "idle")

    def _pause_reading(self, reason: str) -> None:
        if not self._paused_for and not self.transport.is_closing():
            self.transport.pause_reading()
        self._paused_for.add(reason)

    def _resume_reading(self, reason: str) -> None:
        if reason not in self._paused_for:
            return
        self._paused_for.discard(reason)
        if not self._paused_for and not self.transport.is_closing():
            self.transport.resume_reading()
