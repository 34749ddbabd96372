"""The DNS TCP connection and its pool, driven through a fake transport: no sockets.

Reply streams (one query, many messages), pipelining after a stream, flow
control, the idle timer, failures, the drain at shutdown, and the limits:
making room when full, per-client caps, lifetimes, closes counted by reason.
"""

from __future__ import annotations

import asyncio
import logging
import struct

import pytest

from server.serve.tcppool import TcpConnections, TcpLimits

HIGH_WATER = 64 * 1024


class FakeTransport(asyncio.Transport):
    """Buffers what the protocol writes as a socket would, and asks it to pause above HIGH_WATER.

    `read()` is the client reading everything buffered; a closed transport reports
    connection_lost once its buffer is empty (at once when aborted).
    """

    def __init__(self, protocol: asyncio.Protocol, peer=("127.0.0.1", 40000)):
        super().__init__()
        self.protocol = protocol
        self.peer = peer
        self.received = bytearray()  # what the client has read
        self.buffered = bytearray()  # written, not yet read
        self.most_buffered = 0
        self.write_paused = False
        self.reading = True
        self.closing = False
        self.aborted = False
        self.lost = False
        protocol.connection_made(self)

    def get_extra_info(self, name, default=None):
        return self.peer if name == "peername" else default

    def write(self, data) -> None:
        assert not self.lost, "write after the connection was lost"
        self.buffered += data
        self.most_buffered = max(self.most_buffered, len(self.buffered))
        if not self.write_paused and len(self.buffered) > HIGH_WATER:
            self.write_paused = True
            self.protocol.pause_writing()

    def read(self) -> None:
        self.received += self.buffered
        self.buffered.clear()
        if self.write_paused:
            self.write_paused = False
            self.protocol.resume_writing()
        if self.closing:
            self._lose()

    def send(self, data: bytes) -> None:
        self.protocol.data_received(data)

    def close(self) -> None:
        self.closing = True
        if not self.buffered:
            asyncio.get_running_loop().call_soon(self._lose)

    def abort(self) -> None:
        self.closing = self.aborted = True
        self.buffered.clear()
        asyncio.get_running_loop().call_soon(self._lose)

    def _lose(self) -> None:
        if not self.lost:
            self.lost = True
            self.protocol.connection_lost(None)

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading


def frame(message: bytes) -> bytes:
    return struct.pack("!H", len(message)) + message


def frames(data: bytes) -> list[bytes]:
    """The messages in a TCP byte stream; fails on a half message at the end."""
    out, at = [], 0
    while at < len(data):
        assert at + 2 <= len(data), "a half length prefix"
        size = struct.unpack_from("!H", data, at)[0]
        assert at + 2 + size <= len(data), "a half message"
        out.append(bytes(data[at + 2 : at + 2 + size]))
        at += 2 + size
    return out


def query(text: str) -> bytes:
    """A stand-in query: the handlers below look at its text only."""
    return text.encode()


class Handler:
    """Echoes b"re:" + query; "stream N SIZE [DELAY]" answers with N messages of SIZE bytes; "fail K" breaks after K."""

    def __init__(self) -> None:
        self.closed_streams = 0

    def __call__(self, data: bytes, tcp: bool, peer):
        words = data.decode().split()
        if words[0] == "stream":
            count, size = int(words[1]), int(words[2])
            delay = float(words[3]) if len(words) > 3 else 0.0
            return self._stream(count, size, delay)
        if words[0] == "fail":
            return self._failing(int(words[1]))
        if words[0] == "huge":
            return self._stream(1, 70000, 0.0)
        return b"re:" + data

    async def _stream(self, count: int, size: int, delay: float):
        try:
            for index in range(count):
                if delay:
                    await asyncio.sleep(delay)
                yield index.to_bytes(4, "big") + b"x" * (size - 4)
        finally:
            self.closed_streams += 1

    async def _failing(self, good: int):
        for index in range(good):
            yield b"m%d" % index
        raise RuntimeError("the zone changed under the transfer")


def connect(pool: TcpConnections, handler, peer=("127.0.0.1", 40000)) -> FakeTransport:
    return FakeTransport(pool.protocol_factory(handler)(), peer)


async def until(predicate, what: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, what
        await asyncio.sleep(0.001)


def pool_with(**limits) -> TcpConnections:
    return TcpConnections(TcpLimits(**{"idle_timeout": 5.0, "max_lifetime": 0.0, **limits}))


async def test_a_stream_is_written_as_the_client_reads_never_buffered_whole():
    pool, handler = pool_with(), Handler()
    conn = connect(pool, handler)
    conn.send(frame(query("stream 2000 1000")))  # 2 MB in 2,000 messages
    ticks = 0

    total = 2000 * (2 + 1000)

    async def meanwhile():  # the event loop keeps running other work during the stream
        nonlocal ticks
        while len(conn.received) < total:
            ticks += 1
            await asyncio.sleep(0)

    other = asyncio.ensure_future(meanwhile())
    while len(conn.received) < total:  # a reader slower than the loop: the stream must wait for it
        await asyncio.sleep(0.002)
        conn.read()
    await other
    messages = frames(bytes(conn.received))
    assert [int.from_bytes(m[:4], "big") for m in messages] == list(range(2000))
    assert all(len(m) == 1000 for m in messages)
    assert conn.most_buffered <= HIGH_WATER + 1002  # paused at the high-water mark: at most one message beyond it
    assert ticks > 100
    assert handler.closed_streams == 1 and not conn.closing


async def test_queries_pipelined_behind_a_stream_are_answered_after_it_in_order():
    pool = pool_with()
    conn = connect(pool, Handler())
    conn.send(frame(query("a")) + frame(query("stream 50 2000")) + frame(query("b")))
    conn.send(frame(query("c"))[:3])  # half a query, mid-stream
    conn.send(frame(query("c"))[3:] + frame(query("d")))
    await until(lambda: (conn.read() or True) and len(frames(bytes(conn.received))) == 54, "every reply")
    messages = frames(bytes(conn.received))
    assert messages[0] == b"re:a"
    assert [int.from_bytes(m[:4], "big") for m in messages[1:51]] == list(range(50))
    assert messages[51:] == [b"re:b", b"re:c", b"re:d"]


async def test_reading_pauses_while_a_stream_holds_a_backlog_of_queries():
    pool = pool_with()
    conn = connect(pool, Handler())
    conn.send(frame(query("stream 200 4000")))
    backlog = frame(b"q" * 60000)
    for _ in range(3):
        conn.send(backlog)
    assert not conn.reading  # more than two big queries wait: stop reading
    await until(lambda: (conn.read() or True) and len(frames(bytes(conn.received))) == 203, "the stream and the backlog")
    assert conn.reading


async def test_the_idle_timer_does_not_fire_during_a_slow_stream_but_after_it():
    pool = pool_with(idle_timeout=0.05)
    conn = connect(pool, Handler())
    conn.send(frame(query("stream 12 100 0.02")))  # 0.24 s of stream, several idle timeouts
    await until(lambda: (conn.read() or True) and len(frames(bytes(conn.received))) == 12, "the whole stream", timeout=10)
    assert not conn.closing
    await until(lambda: conn.lost, "the idle timeout after the stream")
    assert pool.closed["idle"] == 1 and not pool.open


async def test_a_failing_stream_closes_the_connection_after_whole_messages_with_a_log_line(caplog):
    pool = pool_with()
    conn = connect(pool, Handler())
    with caplog.at_level(logging.ERROR, "pod_identity_dns.transport"):
        conn.send(frame(query("fail 3")) + frame(query("after")))
        await until(lambda: conn.closing, "the close")
    conn.read()
    assert frames(bytes(conn.received)) == [b"m0", b"m1", b"m2"]  # never the reply to "after"
    assert not conn.aborted  # closed, so what was written is delivered
    assert any("reply stream" in r.getMessage() and "failed after 3 messages" in r.getMessage() for r in caplog.records)
    assert pool.closed["error"] == 1


async def test_an_oversized_stream_message_is_an_error_not_a_broken_frame():
    pool = pool_with()
    conn = connect(pool, Handler())
    conn.send(frame(query("huge")))
    await until(lambda: conn.closing, "the close")
    assert bytes(conn.buffered) == b"" and pool.closed["error"] == 1


async def test_a_client_that_stops_reading_a_stream_is_cut_after_an_idle_timeout():
    pool, handler = pool_with(idle_timeout=0.1), Handler()
    conn = connect(pool, handler)
    conn.send(frame(query("stream 1000 1000")))
    await until(lambda: conn.closing, "the stalled close")
    assert pool.closed["stalled"] == 1
    await until(lambda: handler.closed_streams == 1, "the stream closed")


async def test_drain_waits_for_a_short_stream_and_cuts_a_long_one_between_messages():
    pool, handler = pool_with(), Handler()
    short = connect(pool, handler, ("127.0.0.1", 1))
    short.send(frame(query("stream 5 100 0.02")))
    endless = connect(pool, handler, ("127.0.0.1", 2))
    endless.send(frame(query("stream 100000 100 0.01")))
    idle = connect(pool, handler, ("127.0.0.1", 3))

    async def reader():
        while not (short.lost and endless.lost):
            short.read()
            endless.read()
            await asyncio.sleep(0.005)

    reading = asyncio.ensure_future(reader())
    cut = await pool.drain(0.3)
    await reading
    assert cut == 1
    assert idle.lost and len(frames(bytes(short.received))) == 5
    sent = frames(bytes(endless.received))  # whole messages only, in order, then the close
    assert 5 < len(sent) < 100000 and [int.from_bytes(m[:4], "big") for m in sent] == list(range(len(sent)))
    assert not endless.aborted
    assert pool.closed["shutdown"] == 3 and not pool.open
    assert handler.closed_streams == 2


async def test_when_full_the_longest_idle_connection_makes_room():
    pool = pool_with(max_connections=3)
    handler = Handler()
    first, second, third = (connect(pool, handler, (f"10.0.0.{i}", 5000)) for i in (1, 2, 3))
    first.send(frame(query("one")))  # active most recently, so second is the longest idle
    third.send(frame(query("three")))
    fourth = connect(pool, handler, ("10.0.0.4", 5000))
    assert second.closing and not first.closing and not third.closing and not fourth.closing
    await asyncio.sleep(0)
    assert pool.closed["evicted"] == 1 and len(pool.open) == 3
    fourth.send(frame(query("four")))
    assert frames(bytes(fourth.buffered)) == [b"re:four"]


async def test_a_connection_sending_a_stream_never_makes_room_and_then_new_ones_are_refused(caplog):
    pool = pool_with(max_connections=2)
    handler = Handler()
    busy = [connect(pool, handler, (f"10.0.0.{i}", 5000)) for i in (1, 2)]
    for conn in busy:
        conn.send(frame(query("stream 100000 1000")))  # never read: both stay mid-stream
    await asyncio.sleep(0.01)
    with caplog.at_level(logging.WARNING, "pod_identity_dns.transport"):
        refused = [connect(pool, handler, ("10.0.0.9", 5000 + i)) for i in range(5)]
    assert all(conn.aborted for conn in refused) and not any(conn.closing for conn in busy)
    assert pool.closed["full"] == 5
    assert len([r for r in caplog.records if "TCP connection limit (2) reached" in r.getMessage()]) == 1  # once, not per connection


async def test_a_half_sent_query_makes_room_only_when_nothing_is_idle():
    pool = pool_with(max_connections=2)
    handler = Handler()
    partial = connect(pool, handler, ("10.0.0.1", 1))
    partial.send(frame(query("abc"))[:3])
    idle = connect(pool, handler, ("10.0.0.2", 1))
    streaming = connect(pool, handler, ("10.0.0.3", 1))
    assert idle.closing and not partial.closing
    streaming.send(frame(query("stream 100000 1000")))
    await asyncio.sleep(0.01)
    connect(pool, handler, ("10.0.0.4", 1))
    assert partial.closing and not streaming.closing


async def test_one_client_makes_room_among_its_own_connections(caplog):
    pool = pool_with(max_connections=100, max_per_client=3)
    handler = Handler()
    other = connect(pool, handler, ("10.0.0.2", 1))
    with caplog.at_level(logging.WARNING, "pod_identity_dns.transport"):
        own = [connect(pool, handler, ("10.0.0.1", port)) for port in range(1, 8)]
    assert [conn.closing for conn in own] == [True] * 4 + [False] * 3
    assert not other.closing
    assert pool.closed["evicted"] == 4 and len(pool.open) == 4
    assert len([r for r in caplog.records if "per-client limit (3)" in r.getMessage()]) == 1


async def test_the_lifetime_ends_a_busy_connection_once_its_answers_are_written():
    pool = pool_with(max_lifetime=0.1, idle_timeout=5.0)
    conn = connect(pool, Handler())
    for index in range(5):
        conn.send(frame(query(f"q{index}")))
        await asyncio.sleep(0.01)
    assert not conn.closing
    conn.send(frame(query("stream 20 100 0.01")))  # running when the lifetime ends: it finishes first
    await until(lambda: conn.closing, "the lifetime close")
    conn.read()
    assert len(frames(bytes(conn.received))) == 25
    assert pool.closed["lifetime"] == 1


async def test_an_idle_connection_is_closed_and_a_client_close_is_counted():
    pool = pool_with(idle_timeout=0.05)
    idle = connect(pool, Handler())
    gone = connect(pool, Handler(), ("127.0.0.1", 2))
    gone.send(frame(query("x")))
    gone.protocol.eof_received()
    assert gone.closing
    gone.read()
    await until(lambda: idle.lost and gone.lost, "both closed")
    assert frames(bytes(gone.received)) == [b"re:x"]
    assert pool.closed["idle"] == 1 and pool.closed["client"] == 1
    assert pool.open == set()


@pytest.mark.parametrize("reason", ["lifetime", "shutdown"])
async def test_a_half_received_query_is_answered_before_a_retiring_connection_closes(reason):
    pool = pool_with(max_lifetime=0.05 if reason == "lifetime" else 0.0)
    conn = connect(pool, Handler())
    conn.send(frame(query("late"))[:4])
    if reason == "shutdown":
        draining = asyncio.ensure_future(pool.drain(2.0))
    await asyncio.sleep(0.1)
    assert not conn.closing
    conn.send(frame(query("late"))[4:])
    assert conn.closing
    conn.read()
    assert frames(bytes(conn.received)) == [b"re:late"]
    if reason == "shutdown":
        assert await draining == 0
    assert pool.closed[reason] == 1
