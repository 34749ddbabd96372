"""The HTTP port under pressure, with real sockets: idle connections capped and timed out, so probes
and DNS keep working within the open-file limit; /debug/identities built one at a time."""

from __future__ import annotations

import asyncio
import resource
import socket

import aiohttp
import dns.message
import dns.query

from server.ops.http import HttpServer
from server.serve.listeners import bind_all
from tests.integration.test_metrics import http_get
from tests.serverproc import ServerProcess

KAFKA0 = "kafka-0.kafka.default.pods.example.internal"
DEMO = ["--config", "configs/demo.yaml", "--metrics-listen", "127.0.0.1:0"]


def _room_for(count: int) -> None:
    """Let this test process itself open `count` more sockets (the soft limit may be low)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < count + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1024) if hard != resource.RLIM_INFINITY else count + 1024, hard))


def _closed_by_server(conn: socket.socket, timeout: float) -> bool:
    conn.settimeout(timeout)
    try:
        return conn.recv(10) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_idle_http_connections_cannot_exhaust_descriptors_probes_and_dns_keep_working():
    _room_for(900)
    args = [*DEMO, "--tcp-max-connections", "100", "--metrics-max-connections", "20", "--metrics-idle-timeout", "2"]
    with ServerProcess(*args) as server:
        # The server raised its soft limit at start; hold it to 220 descriptors now, as a small nofile would.
        resource.prlimit(server.proc.pid, resource.RLIMIT_NOFILE, (220, 220))
        http_idle = [socket.create_connection(("127.0.0.1", server.metrics_port), timeout=5) for _ in range(400)]
        dns_idle = [
            socket.create_connection(("127.0.0.1", server.port), timeout=5, source_address=(f"127.0.0.{2 + i % 5}", 0)) for i in range(300)
        ]
        try:
            assert http_get(server.metrics_port, "/healthz")[0] == 200
            assert http_get(server.metrics_port, "/readyz")[0] == 200
            reply = dns.query.tcp(dns.message.make_query(KAFKA0, "A"), "127.0.0.1", port=server.port, timeout=5)
            assert reply.answer[0][0].address == "10.244.1.10"
            assert dns.query.udp(dns.message.make_query(KAFKA0, "A"), "127.0.0.1", port=server.port, timeout=5).answer
            # Most were closed to make room; the rest are closed once idle for the timeout.
            assert all(_closed_by_server(conn, 10) for conn in http_idle)
        finally:
            for conn in http_idle + dns_idle:
                conn.close()
        assert http_get(server.metrics_port, "/healthz")[0] == 200
    assert len([line for line in server.lines if "HTTP connection limit (20) reached" in line]) == 1
    assert not [line for line in server.lines if "Too many open files" in line]


def test_a_keep_alive_connection_is_served_until_idle_then_closed():
    with ServerProcess(*DEMO, "--metrics-idle-timeout", "1") as server:
        conn = socket.create_connection(("127.0.0.1", server.metrics_port), timeout=5)
        for _ in range(3):
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            head = b""
            while not head.endswith(b"ok\n"):
                head += conn.recv(4096)
            assert head.startswith(b"HTTP/1.1 200")
        assert _closed_by_server(conn, 10)
        conn.close()
        # and one that never sends a request
        silent = socket.create_connection(("127.0.0.1", server.metrics_port), timeout=5)
        assert _closed_by_server(silent, 10)
        silent.close()
        assert dns.query.tcp(dns.message.make_query(KAFKA0, "A"), "127.0.0.1", port=server.port, timeout=5).answer


class SlowStatus:
    """A ServerStatus whose /debug/identities build waits until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.builds: list[dict] = []

    ready = True

    def not_ready_reasons(self) -> list[str]:
        return []

    async def debug_identities(self, params):
        self.builds.append(dict(params))
        await self.release.wait()
        return {"identities": [], "params": dict(params)}


async def test_debug_identities_builds_one_at_a_time_and_about_once_a_second():
    sockets = bind_all((), ("127.0.0.1", 0), reuse_port=False)
    status = SlowStatus()
    http = HttpServer(status, lambda accept: (b"", "text/plain"))  # type: ignore[arg-type]
    assert sockets.http is not None
    host, port = await http.start(sockets.http)
    url = f"http://{host}:{port}/debug/identities"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            first = asyncio.ensure_future(session.get(url + "?view=all"))
            while not status.builds:
                await asyncio.sleep(0.01)
            async with session.get(url) as second:  # while the first builds
                assert second.status == 429 and second.headers["Retry-After"] == "1"
            status.release.set()
            response = await first
            assert response.status == 200
            assert (await response.json())["params"] == {"view": "all"}  # the query parameters reach the status
            async with session.get(url) as third:  # right after: too soon
                assert third.status == 429
            await asyncio.sleep(1.1)
            async with session.get(url) as fourth:
                assert fourth.status == 200
            async with session.get(f"http://{host}:{port}/healthz") as health:  # never limited
                assert health.status == 200
            status.release.clear()
            for _ in range(2):  # lookups of one IP are cheap: answered while a listing would be refused
                status.release.set()
                async with session.get(url + "?ip=10.244.1.10") as lookup:
                    assert lookup.status == 200
        assert len(status.builds) == 4
    finally:
        await http.stop()
