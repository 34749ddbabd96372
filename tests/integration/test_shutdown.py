"""Probes and shutdown of the real server: not ready before sync, lame duck on SIGTERM, no query lost before close."""

from __future__ import annotations

import json
import signal
import socket
import struct
import threading
import time
from datetime import datetime

import dns.message
import dns.rcode
import pytest

from tests.conftest import ZONE
from tests.integration.test_metrics import http_get, scrape
from tests.serverproc import ServerProcess, read_tcp_frame

KAFKA0 = f"kafka-0.kafka.default.{ZONE}"
DEMO = ["--config", "configs/demo.yaml", "--metrics-listen", "127.0.0.1:0"]
CLOSING = "closing the DNS listeners"

UNREACHABLE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster: {server: "http://127.0.0.1:1"}
users:
- name: nobody
  user: {token: not-a-token}
contexts:
- name: nowhere
  context: {cluster: nowhere, user: nobody}
current-context: nowhere
"""


def rcode_of(port: int, qname: str, qtype: str = "A") -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(dns.message.make_query(qname, qtype).to_wire(), ("127.0.0.1", port))
        return dns.rcode.to_text(dns.message.from_wire(sock.recvfrom(65535)[0]).rcode())


def test_unsynced_cluster_source_is_not_ready_and_answers_servfail(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(UNREACHABLE_KUBECONFIG)
    args = ["--zone", ZONE, "--reverse-cidr", "10.244.0.0/16", "--kubeconfig", str(kubeconfig), "--metrics-listen", "127.0.0.1:0"]
    with ServerProcess(*args) as server:
        status, _, body = http_get(server.metrics_port, "/readyz")
        assert status == 503 and "not synced" in body
        assert http_get(server.metrics_port, "/healthz")[0] == 200
        assert rcode_of(server.port, KAFKA0) == "SERVFAIL"
        assert rcode_of(server.port, "10.1.244.10.in-addr.arpa", "PTR") == "SERVFAIL"
        assert rcode_of(server.port, "www.example.com") == "REFUSED"
        server.wait_for_log(r"pod_identity_dns.kube: .*connection")  # the watcher retries, and says why
        samples = scrape(server.metrics_port)
        assert samples[("poddns_kubernetes_synced", frozenset())] == 0
        assert samples[("poddns_ready", frozenset())] == 0
        assert samples[("poddns_kubernetes_api_errors_total", frozenset({("error", "connection")}))] >= 1
        assert http_get(server.metrics_port, "/readyz")[0] == 503


class _Stream(threading.Thread):
    """Queries one after another until stopped, recording (time sent, answered?) for each."""

    def __init__(self, port: int, tcp: bool):
        super().__init__(daemon=True)
        self.port, self.tcp = port, tcp
        self.records: list[tuple[float, bool]] = []
        self.stop = threading.Event()
        self.conn: socket.socket | None = None

    def run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.settimeout(0.5)
            while not self.stop.is_set():
                query = dns.message.make_query(KAFKA0, "A")
                sent = time.time()
                try:
                    reply = self._tcp(query) if self.tcp else self._udp(udp, query)
                    answered = reply.id == query.id and reply.answer[0][0].address == "10.244.1.10"
                except (OSError, ConnectionError):
                    answered = False
                self.records.append((sent, answered))
                time.sleep(0.002)
        if self.conn is not None:
            self.conn.close()

    def _udp(self, sock: socket.socket, query: dns.message.Message) -> dns.message.Message:
        sock.sendto(query.to_wire(), ("127.0.0.1", self.port))
        while True:  # skip a late reply to an earlier query
            reply = dns.message.from_wire(sock.recvfrom(65535)[0])
            if reply.id == query.id:
                return reply

    def _tcp(self, query: dns.message.Message) -> dns.message.Message:
        if self.conn is None:
            self.conn = socket.create_connection(("127.0.0.1", self.port), timeout=1)
        wire = query.to_wire()
        try:
            self.conn.sendall(struct.pack("!H", len(wire)) + wire)
            return dns.message.from_wire(read_tcp_frame(self.conn))
        except OSError:
            self.conn.close()
            self.conn = None
            raise


def _log_time(line: str) -> float:
    """Unix time of a JSON log line (milliseconds, truncated: never later than the event)."""
    return datetime.fromisoformat(json.loads(line)["time"]).timestamp()


@pytest.mark.parametrize("frontend", ["batched", "uvloop"])
def test_sigterm_fails_readiness_at_once_keeps_answering_then_closes_without_losing_queries(frontend):
    lameduck = 2.0
    server = ServerProcess(*DEMO, "--lameduck", str(lameduck), "--log-format", "json", "--udp-frontend", frontend)
    with server:
        assert http_get(server.metrics_port, "/readyz")[0] == 200
        streams = [_Stream(server.port, tcp=False), _Stream(server.port, tcp=True)]
        for stream in streams:
            stream.start()
        time.sleep(0.3)

        term = time.time()
        server.proc.send_signal(signal.SIGTERM)
        status, _, body = http_get(server.metrics_port, "/readyz")
        while status == 200 and time.time() - term < 0.2:
            status, _, body = http_get(server.metrics_port, "/readyz")
        assert status == 503 and "shutting down" in body
        assert http_get(server.metrics_port, "/healthz")[0] == 200  # alive, only not ready
        assert rcode_of(server.port, KAFKA0) == "NOERROR"  # still answering in the lame duck

        assert server.proc.wait(lameduck + 5) == 0
        exited = time.time()
        for stream in streams:
            stream.stop.set()
            stream.join(5)

    assert exited - term < lameduck + 3
    events = [json.loads(line) for line in server.lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(event) for event in events)
    messages = [event["message"] for event in events]
    assert any(m.startswith("shutting down: not ready, still answering for 2.0 s") for m in messages)
    assert messages[-1] == "stopped"
    closing = _log_time(next(line for line in server.lines if CLOSING in line))
    assert term + lameduck - 0.1 <= closing <= term + lameduck + 1

    for stream in streams:
        before_close = [answered for sent, answered in stream.records if sent < closing]
        assert len(before_close) > 50
        assert all(before_close), (
            f"{before_close.count(False)} queries sent before the close got no answer ({'tcp' if stream.tcp else 'udp'})"
        )
        in_lame_duck = [answered for sent, answered in stream.records if term + 0.1 < sent < closing]
        assert len(in_lame_duck) > 20


def test_a_tcp_query_half_received_at_close_is_still_answered_and_queries_are_logged():
    server = ServerProcess(*DEMO, "--lameduck", "0.5", "--log-format", "json", "--log-queries")
    with server:
        query = dns.message.make_query(f"zk-0.zk.default.{ZONE}", "A")
        wire = query.to_wire()
        frame = struct.pack("!H", len(wire)) + wire
        conn = socket.create_connection(("127.0.0.1", server.port), timeout=3)
        conn.sendall(frame[:7])  # the length and part of the header
        server.proc.send_signal(signal.SIGTERM)
        server.wait_for_log(CLOSING)
        time.sleep(0.3)  # the listeners are closed now
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            raise AssertionError("a new TCP connection was accepted after the listeners closed")
        except ConnectionRefusedError:
            pass
        conn.sendall(frame[7:])
        reply = dns.message.from_wire(read_tcp_frame(conn))
        assert reply.id == query.id and reply.answer[0][0].address == "10.244.1.20"
        assert conn.recv(10) == b""  # then the server closes the connection
        conn.close()
        assert server.proc.wait(5) == 0

    logged = [json.loads(line) for line in server.lines if '"pod_identity_dns.queries"' in line]
    assert len(logged) == 1
    message = logged[0]["message"]
    assert message.startswith(f"zk-0.zk.default.{ZONE}. A from 127.0.0.1:") and "over tcp: NOERROR" in message
