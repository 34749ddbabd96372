"""The batched UDP front end over real UDP sockets on loopback: batches, peers, failures, truncation, close."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time

import pytest
import uvloop

from server.serve import mmsg, udpbatch
from server.serve.listeners import BindError
from server.serve.transport import UDP_QUERY_MAX, UdpProtocol
from server.serve.udpbatch import DATAGRAMS_PER_WAKEUP, BatchedUdp
from server.serve.udpfront import serve_udp
from tests.serverproc import has_ipv6_loopback

FAMILIES = [
    pytest.param(socket.AF_INET, "127.0.0.1", id="ipv4"),
    pytest.param(socket.AF_INET6, "::1", id="ipv6", marks=pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no ::1")),
]


def udp_socket(family: int, host: str) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


def replies(sock: socket.socket, expected: int, timeout: float = 5.0) -> list[tuple[bytes, tuple]]:
    """Read `expected` datagrams (or what came within `timeout`)."""
    got: list[tuple[bytes, tuple]] = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        try:
            got.append(sock.recvfrom(65535))
        except BlockingIOError:
            time.sleep(0.001)
    return got


class Recorder:
    """A handler that answers b"re:" + query and records (query, peer) of every call."""

    def __init__(self, answer=None):
        self.calls: list[tuple[bytes, tuple]] = []
        self.answer = answer or (lambda query: b"re:" + query)

    def __call__(self, query: bytes, tcp: bool, peer: tuple):
        assert tcp is False
        self.calls.append((query, peer))
        return self.answer(query)


@pytest.mark.parametrize("family,host", FAMILIES)
def test_queries_from_many_clients_each_get_their_own_replies_over_several_batches(family, host):
    server, recorder = udp_socket(family, host), Recorder()
    clients = [udp_socket(family, host) for _ in range(5)]
    listener = BatchedUdp(server, recorder, batch=8)
    try:
        for n in range(20):
            for k, client in enumerate(clients):
                client.sendto(f"q{k}-{n}".encode(), server.getsockname())
        time.sleep(0.05)
        listener.readable()  # 100 queries: 13 batches of up to 8, in one wakeup
        for k, client in enumerate(clients):
            got = replies(client, 20)
            assert [data for data, _ in got] == [f"re:q{k}-{n}".encode() for n in range(20)]
            assert {addr[:2] for _, addr in got} == {server.getsockname()[:2]}
        peers = {query.decode().split("-")[0]: peer for query, peer in recorder.calls}
        for k, client in enumerate(clients):
            assert peers[f"q{k}"] == client.getsockname()  # the tuple the socket module (and uvloop) would give
    finally:
        listener.close()
        for client in clients:
            client.close()


@pytest.mark.parametrize("family,host", FAMILIES)
def test_a_query_without_reply_or_with_a_bug_leaves_the_others_answered_to_the_right_peer(family, host, caplog):
    def answer(query: bytes):
        if query.startswith(b"none"):
            return None
        if query.startswith(b"bug"):
            raise RuntimeError("a bug")
        return b"re:" + query

    server, recorder = udp_socket(family, host), Recorder(answer)
    clients = [udp_socket(family, host) for _ in range(6)]
    listener = BatchedUdp(server, recorder, batch=6)
    try:
        kinds = ["none", "ok", "bug", "ok", "none", "ok"]
        for rounds in range(2):  # twice: the second batch starts from the slots the first left
            for k, (client, kind) in enumerate(zip(clients, kinds)):
                client.sendto(f"{kind}{k}.{rounds}".encode(), server.getsockname())
            time.sleep(0.05)
            with caplog.at_level(logging.ERROR, logger="pod_identity_dns.transport"):
                listener.readable()
            for k, (client, kind) in enumerate(zip(clients, kinds)):
                expected = [f"re:ok{k}.{rounds}".encode()] if kind == "ok" else []
                assert [data for data, _ in replies(client, len(expected), timeout=0.3 if not expected else 5)] == expected
        assert sum("internal error answering a UDP query" in r.message for r in caplog.records) == 2
    finally:
        listener.close()
        for client in clients:
            client.close()


def test_a_reply_the_kernel_refuses_is_dropped_and_the_rest_of_the_batch_still_goes(caplog):
    server, recorder = udp_socket(socket.AF_INET, "127.0.0.1"), Recorder()
    clients = [udp_socket(socket.AF_INET, "127.0.0.1") for _ in range(4)]
    listener = BatchedUdp(server, recorder, batch=4)
    try:
        for k, client in enumerate(clients):
            client.sendto(b"q%d" % k, server.getsockname())
        time.sleep(0.05)
        assert listener.receive() == 4
        # The second query's peer becomes the broadcast address: sendmmsg refuses it (EACCES without SO_BROADCAST).
        slots = listener._slots
        at = 1 * slots.name_stride + mmsg.field_offset(mmsg.SockaddrIn, "sin_addr")
        slots.names[at : at + 4] = socket.inet_aton("255.255.255.255")
        with caplog.at_level(logging.DEBUG, logger="pod_identity_dns.transport"):
            listener.send(listener.answer(4))
        assert listener.unsent == 1
        assert [data for data, _ in replies(clients[0], 1)] == [b"re:q0"]
        assert replies(clients[1], 1, timeout=0.3) == []
        assert [data for data, _ in replies(clients[2], 1)] == [b"re:q2"]
        assert [data for data, _ in replies(clients[3], 1)] == [b"re:q3"]
        assert any("UDP reply to ('255.255.255.255'" in r.message and "not sent" in r.message for r in caplog.records)
    finally:
        listener.close()
        for client in clients:
            client.close()


def test_long_query_empty_datagram_and_big_reply_as_the_uvloop_path_has_them():
    """The handler sees what UdpProtocol gives it: a query cut at UDP_QUERY_MAX, an empty datagram as b""."""
    long_query = bytes(range(256)) * 20  # 5120 bytes
    seen = {}
    for name in ("batched", "uvloop"):
        server, client = udp_socket(socket.AF_INET, "127.0.0.1"), udp_socket(socket.AF_INET, "127.0.0.1")
        recorder = Recorder(lambda query: b"R" * 5000 if query == b"big" else b"re:" + query[:8])
        loop = uvloop.new_event_loop()
        try:
            if name == "batched":
                listener = BatchedUdp(server, recorder, batch=4)
                listener.start(loop)
            else:
                transport, _ = loop.run_until_complete(loop.create_datagram_endpoint(functools.partial(UdpProtocol, recorder), sock=server))
            for data in (long_query, b"", b"big"):
                client.sendto(data, server.getsockname())
            loop.run_until_complete(asyncio.sleep(0.2))
            got = [data for data, _ in replies(client, 3)]
            (listener if name == "batched" else transport).close()
            loop.run_until_complete(asyncio.sleep(0))
        finally:
            loop.close()
            client.close()
        seen[name] = ([query for query, _ in recorder.calls], got)
    for name in ("batched", "uvloop"):
        queries, got = seen[name]
        assert queries == [long_query[:UDP_QUERY_MAX], b"", b"big"], name
        assert sorted(got) == [b"R" * 5000, b"re:", b"re:" + long_query[:8]], name  # the big reply went by sendto


def test_one_wakeup_reads_a_bounded_number_then_the_loop_comes_back():
    server, client, recorder = udp_socket(socket.AF_INET, "127.0.0.1"), udp_socket(socket.AF_INET, "127.0.0.1"), Recorder()
    listener = BatchedUdp(server, recorder, batch=4)
    try:
        total = DATAGRAMS_PER_WAKEUP + 44
        for n in range(total):
            client.sendto(b"%d" % n, server.getsockname())
        time.sleep(0.1)
        listener.readable()
        assert len(recorder.calls) == DATAGRAMS_PER_WAKEUP  # the rest waits for the next wakeup
        listener.readable()
        assert len(recorder.calls) == total
        assert len(replies(client, total)) == total
    finally:
        listener.close()
        client.close()


def test_close_answers_what_is_already_in_the_socket_buffer_then_stops_reading():
    server, client, recorder = udp_socket(socket.AF_INET, "127.0.0.1"), udp_socket(socket.AF_INET, "127.0.0.1"), Recorder()
    loop = uvloop.new_event_loop()
    address = server.getsockname()
    try:
        listener = BatchedUdp(server, recorder, batch=8)
        listener.start(loop)
        for n in range(50):  # the loop is not running: they wait in the buffer
            client.sendto(b"%d" % n, address)
        time.sleep(0.05)
        listener.close()
        assert len(replies(client, 50)) == 50
        assert server.fileno() == -1 and listener.is_closing()
        client.sendto(b"late", address)
        loop.run_until_complete(asyncio.sleep(0.1))
        assert replies(client, 1, timeout=0.2) == []
    finally:
        loop.close()
        client.close()


async def test_served_from_the_event_loop_while_other_work_runs():
    loop = asyncio.get_running_loop()
    server, client, recorder = udp_socket(socket.AF_INET, "127.0.0.1"), udp_socket(socket.AF_INET, "127.0.0.1"), Recorder()
    listener, frontend = await serve_udp(loop, server, recorder, "auto", 16)
    assert frontend == "batched"
    ticks = 0

    async def other_work():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_work())
    try:
        for n in range(2000):
            client.sendto(b"%d" % n, server.getsockname())
            if n % 100 == 99:
                await asyncio.sleep(0.005)
        deadline = loop.time() + 5
        while len(recorder.calls) < 2000 and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert len(recorder.calls) == 2000
        assert ticks > 20  # the loop ran the other task in between
    finally:
        other.cancel()
        listener.close()
        client.close()


async def test_auto_falls_back_to_uvloop_where_batching_is_unavailable_and_batched_refuses(monkeypatch, caplog):
    def unavailable():
        raise mmsg.Unavailable("recvmmsg/sendmmsg are used on Linux only (this is testos)")

    monkeypatch.setattr(udpbatch.mmsg, "load", unavailable)
    loop = asyncio.get_running_loop()
    server, client, recorder = udp_socket(socket.AF_INET, "127.0.0.1"), udp_socket(socket.AF_INET, "127.0.0.1"), Recorder()
    try:
        with pytest.raises(BindError, match=r"--udp-frontend batched: recvmmsg/sendmmsg are used on Linux only"):
            await serve_udp(loop, server, recorder, "batched", 32)
        with caplog.at_level(logging.INFO, logger="pod_identity_dns"):
            listener, frontend = await serve_udp(loop, server, recorder, "auto", 32)
        assert frontend == "uvloop" and not isinstance(listener, BatchedUdp)
        assert any("the batched front end cannot run here" in r.message for r in caplog.records)
        client.sendto(b"hello", server.getsockname())
        await asyncio.sleep(0.1)
        assert [data for data, _ in replies(client, 1)] == [b"re:hello"]
        listener.close()
    finally:
        client.close()
