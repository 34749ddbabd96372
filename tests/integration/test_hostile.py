"""Hostile queries against the real server (issue 9): a 64 KB TCP message of pointer chains and a burst of
1,472-byte ones get FORMERR, and the server goes on answering DNS and /healthz at once; dig sees EDNS on
a FORMERR."""

from __future__ import annotations

import socket
import subprocess
import time

import dns.message
import dns.query
import dns.rcode
import pytest

from tests import hostile
from tests.integration.test_metrics import http_get
from tests.serverproc import ServerProcess, read_tcp_frame

KAFKA0 = hostile.QNAME


@pytest.fixture(scope="module")
def server():
    with ServerProcess("--config", "configs/demo.yaml", "--metrics-listen", "127.0.0.1:0") as running:
        yield running


def answered_normally(server) -> None:
    """A plain query over UDP and TCP and /healthz, each within a normal client timeout."""
    reply = dns.query.udp(dns.message.make_query(KAFKA0, "A"), "127.0.0.1", port=server.port, timeout=2)
    assert reply.answer[0][0].address == "10.244.1.10"
    reply = dns.query.tcp(dns.message.make_query(KAFKA0, "A"), "127.0.0.1", port=server.port, timeout=2)
    assert reply.answer[0][0].address == "10.244.1.10"
    assert http_get(server.metrics_port, "/healthz")[0] == 200


def test_a_64k_pointer_chain_over_tcp_gets_formerr_and_the_connection_goes_on(server):
    chain = hostile.pointer_chain(hostile.TCP_SIZE)
    assert len(chain) > 65000
    plain = dns.message.make_query(KAFKA0, "A").to_wire()
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as conn:
        conn.sendall(len(chain).to_bytes(2, "big") + chain + len(plain).to_bytes(2, "big") + plain)
        formerr = dns.message.from_wire(read_tcp_frame(conn))
        assert formerr.rcode() == dns.rcode.FORMERR
        assert formerr.question[0].name.to_text() == f"{KAFKA0}."
        assert dns.message.from_wire(read_tcp_frame(conn)).answer[0][0].address == "10.244.1.10"
    answered_normally(server)


@pytest.mark.parametrize("shape", ["pointer chain, additional", f"pointer-only chain, {hostile.READ_LIMIT} records", "EDNS options"])
def test_a_burst_of_hostile_datagrams_leaves_the_server_answering(server, shape):
    packet = hostile.SHAPES[shape](1472)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(packet, ("127.0.0.1", server.port))
        assert dns.message.from_wire(sock.recv(4096)).rcode() == dns.rcode.FORMERR
        for _ in range(2000):
            sock.sendto(packet, ("127.0.0.1", server.port))
    answered_normally(server)


def test_deep_names_are_answered_under_a_burst(server):
    packets = [hostile.deep_question() for _ in range(500)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for packet in packets:
            sock.sendto(packet, ("127.0.0.1", server.port))
    time.sleep(0.05)
    reply = dns.query.udp(dns.message.from_wire(hostile.deep_question()), "127.0.0.1", port=server.port, timeout=2)
    assert reply.rcode() == dns.rcode.NXDOMAIN
    answered_normally(server)


def test_dig_header_only_with_a_cookie_sees_edns_on_the_formerr(server):
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(server.port), "+header-only", "+cookie", "+tries=1", "+time=3"],
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert out.returncode == 0, out.stderr
    assert "status: FORMERR" in out.stdout
    assert "OPT PSEUDOSECTION" in out.stdout and "udp: 1232" in out.stdout
    assert "noedns" not in out.stdout + out.stderr


def test_dig_class_any_gets_the_in_answer(server):
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(server.port), "+tries=1", "+time=3", "-q", KAFKA0, "-c", "ANY", "-t", "A"],
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert out.returncode == 0, out.stderr
    assert "status: NOERROR" in out.stdout
    lines = [line.split() for line in out.stdout.splitlines()]
    assert [f";{KAFKA0}.", "ANY", "A"] in lines  # the question as sent
    assert [f"{KAFKA0}.", "30", "IN", "A", "10.244.1.10"] in lines
