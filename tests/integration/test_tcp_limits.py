"""DNS over TCP under pressure, with real sockets: slow clients holding every slot, one greedy client
address, and a long reply stream to a slow reader while others are answered."""

from __future__ import annotations

import asyncio
import random
import selectors
import socket
import struct
import threading
import time

import dns.flags
import dns.message
import dns.query
import uvloop

from server.serve.tcppool import TcpConnections, TcpLimits
from tests.integration.test_metrics import scrape, value
from tests.serverproc import ServerProcess, read_tcp_frame

KAFKA0 = "kafka-0.kafka.default.pods.example.internal"
DEMO = ["--config", "configs/demo.yaml", "--metrics-listen", "127.0.0.1:0"]


def frame(wire: bytes) -> bytes:
    return struct.pack("!H", len(wire)) + wire


class SlowClients(threading.Thread):
    """The attack of the issue at CI scale: many connections, each sending one query every `period`
    seconds (well inside the idle timeout) and reading its answers; closed ones reconnect after a second."""

    def __init__(self, port: int, sources: list[str], per_source: int, period: float):
        super().__init__(daemon=True)
        self.port, self.sources, self.per_source, self.period = port, sources, per_source, period
        self.stop = threading.Event()
        self.connected = threading.Event()
        self.answered_bytes = 0
        self.closed_by_server = 0
        self.query = frame(dns.message.make_query(KAFKA0, "A").to_wire())

    def _open(self, selector: selectors.BaseSelector, source: str) -> None:
        sock = socket.socket()
        sock.bind((source, 0))
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", self.port))
        except OSError:
            sock.close()
            return
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, {"source": source, "next": time.monotonic() + random.uniform(0, self.period)})

    def run(self) -> None:
        selector = selectors.DefaultSelector()
        reconnects: list[tuple[float, str]] = []
        for source in self.sources:
            for _ in range(self.per_source):
                self._open(selector, source)
        self.connected.set()
        while not self.stop.is_set():
            now = time.monotonic()
            for key in list(selector.get_map().values()):
                state = key.data
                if state["next"] <= now:
                    state["next"] = now + self.period
                    try:
                        key.fileobj.send(self.query)
                    except BlockingIOError:
                        pass
                    except OSError:
                        self._drop(selector, key, reconnects, now)
            for key, _ in selector.select(timeout=0.05):
                try:
                    data = key.fileobj.recv(65535)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    self.answered_bytes += len(data)
                else:
                    self.closed_by_server += 1
                    self._drop(selector, key, reconnects, now)
            due = [source for when, source in reconnects if when <= now]
            reconnects = [(when, source) for when, source in reconnects if when > now]
            for source in due:
                self._open(selector, source)
        for key in list(selector.get_map().values()):
            key.fileobj.close()

    def _drop(self, selector, key, reconnects, now) -> None:
        selector.unregister(key.fileobj)
        key.fileobj.close()
        reconnects.append((now + 1.0, key.data["source"]))


def test_slow_clients_holding_every_slot_do_not_lock_out_other_clients():
    args = [*DEMO, "--tcp-max-connections", "100"]
    with ServerProcess(*args) as server:
        attack = SlowClients(server.port, [f"127.0.0.{i}" for i in range(2, 12)], per_source=30, period=2.0)
        attack.start()
        try:
            assert attack.connected.wait(30)
            time.sleep(1.0)  # every slot taken, more waiting: the server is under pressure throughout
            assert value(scrape(server.metrics_port), "poddns_tcp_connections") == 100
            served = 0
            for _ in range(80):
                reply = dns.query.tcp(dns.message.make_query(KAFKA0, "A"), "127.0.0.1", port=server.port, timeout=5, source="127.0.0.1")
                served += reply.answer[0][0].address == "10.244.1.10"
            samples = scrape(server.metrics_port)
        finally:
            attack.stop.set()
            attack.join(10)
        assert served == 80
        assert attack.answered_bytes > 0  # the slow clients were answered too, while they held a slot
        assert value(samples, "poddns_tcp_closed_total", reason="evicted") >= 80
        assert value(samples, "poddns_tcp_closed_total", reason="full") == 0  # no connection was refused
        assert value(samples, "poddns_tcp_connections") <= 100
    limit_lines = [line for line in server.lines if "TCP connection limit (100) reached" in line]
    assert len(limit_lines) == 1, limit_lines  # one line for the whole attack, not one per connection


def test_one_client_address_is_held_to_its_own_limit_and_others_are_untouched():
    args = [*DEMO, "--tcp-max-per-client", "20"]
    with ServerProcess(*args) as server:
        other = socket.create_connection(("127.0.0.1", server.port), timeout=3, source_address=("127.0.0.2", 0))
        greedy = []
        for _ in range(30):
            greedy.append(socket.create_connection(("127.0.0.1", server.port), timeout=3, source_address=("127.0.0.3", 0)))
            time.sleep(0.005)  # each one in turn the newest
        for conn in greedy[10:]:
            conn.sendall(frame(dns.message.make_query(KAFKA0, "A").to_wire()))
            assert dns.message.from_wire(read_tcp_frame(conn)).answer
        for conn in greedy[:10]:  # its ten longest idle made room for the rest
            assert conn.recv(10) == b""
        other.sendall(frame(dns.message.make_query(KAFKA0, "A").to_wire()))
        assert dns.message.from_wire(read_tcp_frame(other)).answer
        samples = scrape(server.metrics_port)
        assert value(samples, "poddns_tcp_connections") == 21
        assert value(samples, "poddns_tcp_closed_total", reason="evicted") == 10
        for conn in [other, *greedy]:
            conn.close()
    assert len([line for line in server.lines if "per-client limit (20)" in line]) == 1


class StreamServer(threading.Thread):
    """The TCP side of the server on a loop of its own (uvloop, as in production), with a handler that
    answers "stream." with MESSAGES messages of SIZE bytes and anything else with one short reply."""

    MESSAGES, SIZE = 800, 16000

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.ready = threading.Event()
        self.port = 0
        self.pool = TcpConnections(TcpLimits(idle_timeout=30.0, max_lifetime=0.0))
        self.most_buffered = 0
        self.loop: asyncio.AbstractEventLoop | None = None

    def handler(self, query: bytes, tcp: bool, peer):
        message = dns.message.from_wire(query)
        reply = bytearray(query)  # the query echoed as a response
        reply[2] |= 0x80
        if message.question[0].name.to_text() == "stream.":
            return self.stream(bytes(reply[:12]))
        return bytes(reply)

    async def stream(self, header: bytes):
        for index in range(self.MESSAGES):
            for conn in self.pool.open:
                self.most_buffered = max(self.most_buffered, conn.transport.get_write_buffer_size())
            yield header + index.to_bytes(4, "big") + b"z" * (self.SIZE - 16)

    def run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            server = await self.loop.create_server(self.pool.protocol_factory(self.handler), "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            self.stopped = asyncio.Event()
            self.ready.set()
            await self.stopped.wait()
            server.close()
            await self.pool.drain(1.0)

        uvloop.run(main())

    def stop(self) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.stopped.set)
        self.join(10)


def test_a_long_stream_to_a_slow_reader_holds_no_one_else_up():
    server = StreamServer()
    server.start()
    assert server.ready.wait(10)
    try:
        reader = socket.socket()
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # before connecting, so the window stays small
        reader.settimeout(10)
        reader.connect(("127.0.0.1", server.port))
        stream_query = dns.message.make_query("stream.", "AXFR").to_wire()
        after = dns.message.make_query("after.", "A")
        reader.sendall(frame(stream_query) + frame(after.to_wire()))  # the second waits for the stream
        first = read_tcp_frame(reader)
        assert first[:2] == stream_query[:2]
        # The reader stops: 12.8 MB of stream cannot all be in flight. Others are answered meanwhile.
        for _ in range(20):
            reply = dns.query.tcp(dns.message.make_query("other.", "A"), "127.0.0.1", port=server.port, timeout=5)
            assert reply.flags & dns.flags.QR
        assert any(conn.stream is not None for conn in list(server.pool.open)), "the stream should still be waiting for the reader"
        received = [first]
        for _ in range(StreamServer.MESSAGES - 1):
            received.append(read_tcp_frame(reader))
        assert [int.from_bytes(m[12:16], "big") for m in received] == list(range(StreamServer.MESSAGES))
        assert all(len(m) == StreamServer.SIZE for m in received)
        last = dns.message.from_wire(read_tcp_frame(reader))  # the pipelined query, answered after the stream
        assert last.id == after.id
        reader.close()
        # Never more than about the high-water mark (64 KiB) plus one message waited in the server.
        assert server.most_buffered <= 64 * 1024 + StreamServer.SIZE + 2
    finally:
        server.stop()
