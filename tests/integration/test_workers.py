"""--workers: several processes share one DNS port; SIGTERM stops them all with exit code 0."""

from __future__ import annotations

import signal
import socket
import time

import dns.message
import dns.query

from tests.serverproc import ServerProcess

KAFKA0 = "kafka-0.kafka.default.pods.example.internal"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bound(server: ServerProcess) -> list[str]:
    return [line for line in server.lines if "answering DNS" in line]


def test_workers_share_the_port_and_stop_together():
    port = _free_port()
    args = ["--config", "configs/demo.yaml", "--listen", f"127.0.0.1:{port}", "--metrics-listen", "off", "--workers", "2"]
    server = ServerProcess(*args)
    with server:
        server.wait_for_log("started 2 workers")
        deadline = time.monotonic() + 20
        while len(_bound(server)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_bound(server)) == 2 and all(f"port {port}" in line for line in _bound(server))
        for _ in range(20):
            reply = dns.query.udp(dns.message.make_query(KAFKA0, "A"), "127.0.0.1", port=port, timeout=3)
            assert reply.answer[0][0].address == "10.244.1.10"
        assert dns.query.tcp(dns.message.make_query(KAFKA0, "A"), "127.0.0.1", port=port, timeout=3).answer
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(15) == 0
    assert len([line for line in server.lines if line.endswith("stopped")]) == 2
