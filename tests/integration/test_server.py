"""The real server process, real sockets on free ports, real clients (dnspython and dig)."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import time

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.zone
import pytest

from tests.conftest import ZONE
from tests.serverproc import ROOT, ServerProcess, has_ipv6_loopback, read_tcp_frame, run_cli

DEMO = ["--config", "configs/demo.yaml", "--listen", "127.0.0.1:0", "--metrics-listen", "off"]
KAFKA0 = f"kafka-0.kafka.default.{ZONE}"
FRONTENDS = ["batched", "uvloop"]  # --udp-frontend: every UDP test runs against both


def udp(port: int, qname: str, qtype: str = "A", host: str = "127.0.0.1", **kw) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(qname, qtype, **kw), host, port=port, timeout=3)


def tcp(port: int, qname: str, qtype: str = "A", host: str = "127.0.0.1") -> dns.message.Message:
    return dns.query.tcp(dns.message.make_query(qname, qtype), host, port=port, timeout=3)


def dig(port: int, *args: str) -> list[str]:
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(port), "+short", "+tries=1", "+time=3", *args], capture_output=True, text=True, timeout=15
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.fixture(scope="module", params=FRONTENDS)
def demo(request):
    with ServerProcess(*DEMO, "--udp-frontend", request.param) as server:
        yield server


def test_demo_answers_forward_and_reverse_over_udp_and_tcp(demo):
    for ask in (udp, tcp):
        reply = ask(demo.port, KAFKA0)
        assert [r.address for r in reply.answer[0]] == ["10.244.1.10"]
        reverse = ask(demo.port, "10.1.244.10.in-addr.arpa", "PTR")
        assert [r.target.to_text() for r in reverse.answer[0]] == [f"{KAFKA0}."]


def test_dig_finds_the_one_right_name(demo):
    assert dig(demo.port, KAFKA0) == ["10.244.1.10"]
    assert dig(demo.port, "-x", "10.244.1.10") == [f"{KAFKA0}."]
    assert dig(demo.port, "+tcp", "-x", "fd00:10:244:1::40") == [f"app-0.app.default.{ZONE}."]
    assert sorted(dig(demo.port, f"kafka.default.{ZONE}")) == ["10.244.1.10", "10.244.2.11", "10.244.3.12"]


def test_dig_sees_nxdomain_with_soa(demo):
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(demo.port), f"nope.{ZONE}", "+tries=1"], capture_output=True, text=True, timeout=15
    )
    assert "status: NXDOMAIN" in out.stdout
    assert "flags: qr aa" in out.stdout
    assert re.search(rf"AUTHORITY SECTION:\n{re.escape(ZONE)}\.\s+5\s+IN\s+SOA\s", out.stdout), out.stdout


def _frame(message: dns.message.Message) -> bytes:
    wire = message.to_wire()
    return struct.pack("!H", len(wire)) + wire


def test_tcp_pipelined_queries_on_one_connection(demo):
    queries = [dns.message.make_query(f"kafka-{i}.kafka.default.{ZONE}", "A") for i in range(3)]
    with socket.create_connection(("127.0.0.1", demo.port), timeout=3) as sock:
        sock.sendall(b"".join(_frame(q) for q in queries))  # all three in one segment
        replies = [dns.message.from_wire(read_tcp_frame(sock)) for _ in queries]
        # and one split across two writes
        frame = _frame(queries[0])
        sock.sendall(frame[:5])
        time.sleep(0.05)
        sock.sendall(frame[5:])
        replies.append(dns.message.from_wire(read_tcp_frame(sock)))
    assert [r.id for r in replies] == [q.id for q in queries] + [queries[0].id]
    assert [r.answer[0][0].address for r in replies] == ["10.244.1.10", "10.244.2.11", "10.244.3.12", "10.244.1.10"]


def test_response_packets_get_no_reply_and_garbage_does_not_stop_answers(demo):
    rng = random.Random(7)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        response = dns.message.make_response(dns.message.make_query(KAFKA0, "A")).to_wire()
        sock.sendto(response, ("127.0.0.1", demo.port))
        with pytest.raises(socket.timeout):
            sock.recvfrom(4096)
        for _ in range(300):
            sock.sendto(rng.randbytes(rng.randrange(0, 600)), ("127.0.0.1", demo.port))
    with socket.create_connection(("127.0.0.1", demo.port), timeout=3) as conn:
        conn.sendall(struct.pack("!H", 40) + rng.randbytes(40) + struct.pack("!H", 0))
    # The burst may overflow the socket buffer, so ask as a resolver would: with retries.
    assert udp_retrying(demo.port, KAFKA0).answer[0][0].address == "10.244.1.10"
    assert tcp(demo.port, KAFKA0).answer[0][0].address == "10.244.1.10"


def test_live_server_survives_mutated_queries_and_keeps_answering(demo):
    """Mutated queries interleaved with valid ones: every valid one answered, no reply ever to QR=1."""
    rng = random.Random(11)
    valid = dns.message.make_query(KAFKA0, "A", use_edns=0).to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        for _round in range(40):
            for _ in range(10):
                data = bytearray(valid)
                for _ in range(rng.randrange(1, 5)):
                    i = rng.randrange(len(data))
                    data[i] = rng.randrange(256)
                if rng.random() < 0.3:
                    data = data[: rng.randrange(len(data))]
                if len(data) > 2:
                    data[2] &= 0x7F  # a query, so it may be answered
                sock.sendto(bytes(data), ("127.0.0.1", demo.port))
            response = bytearray(valid)
            response[2] |= 0x80
            response[0:2] = b"\xff\xee"
            sock.sendto(bytes(response), ("127.0.0.1", demo.port))
            query = dns.message.make_query(KAFKA0, "A")
            sock.sendto(query.to_wire(), ("127.0.0.1", demo.port))
            # Drain the replies to the mutated packets until the valid one arrives.
            while True:
                reply, _ = sock.recvfrom(65535)
                assert reply[:2] != b"\xff\xee", "a response packet was answered"
                if reply[:2] == query.to_wire()[:2]:
                    break
            assert dns.message.from_wire(reply).answer[0][0].address == "10.244.1.10"


def udp_retrying(port: int, qname: str, tries: int = 3) -> dns.message.Message:
    for attempt in range(tries):
        try:
            return dns.query.udp(dns.message.make_query(qname, "A"), "127.0.0.1", port=port, timeout=1)
        except dns.exception.Timeout:
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def test_tcp_idle_timeout_and_a_full_server_closing_its_longest_idle_connection():
    with ServerProcess(*DEMO, "--tcp-idle-timeout", "1", "--tcp-max-connections", "2") as server:
        first = socket.create_connection(("127.0.0.1", server.port), timeout=3)
        second = socket.create_connection(("127.0.0.1", server.port), timeout=3)
        for conn in (first, second):
            conn.sendall(_frame(dns.message.make_query(KAFKA0, "A")))
            assert dns.message.from_wire(read_tcp_frame(conn)).answer
        # Full: the third is served, and the connection idle the longest (the first) makes room.
        third = socket.create_connection(("127.0.0.1", server.port), timeout=3)
        third.sendall(_frame(dns.message.make_query(KAFKA0, "A")))
        assert dns.message.from_wire(read_tcp_frame(third)).answer
        assert first.recv(10) == b""
        server.wait_for_log(r"TCP connection limit \(2\) reached: closing the longest idle connections")
        second.sendall(_frame(dns.message.make_query(KAFKA0, "A")))
        assert dns.message.from_wire(read_tcp_frame(second)).answer
        # Past the idle timeout, the server closes the others too.
        second.settimeout(5)
        third.settimeout(5)
        assert second.recv(10) == b"" and third.recv(10) == b""
        for conn in (first, second, third):
            conn.close()
        assert tcp(server.port, KAFKA0).answer


@pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no ::1")
@pytest.mark.parametrize("frontend", FRONTENDS)
def test_listens_on_ipv6_and_ipv4_at_once(frontend):
    with ServerProcess(*DEMO, "--listen", "[::1]:0", "--udp-frontend", frontend) as server:
        hosts = dict(server.ports)
        assert udp(hosts["::1"], KAFKA0, host="::1").answer[0][0].address == "10.244.1.10"
        assert tcp(hosts["::1"], KAFKA0, host="::1").answer[0][0].address == "10.244.1.10"
        assert udp(hosts["127.0.0.1"], KAFKA0).answer


def _wait_answer(port: int, qname: str, predicate, timeout: float = 10.0) -> dns.message.Message:
    deadline = time.monotonic() + timeout
    while True:
        reply = udp(port, qname)
        if predicate(reply) or time.monotonic() > deadline:
            return reply
        time.sleep(0.1)


def test_pod_file_reload_and_broken_file_keeps_last_good(tmp_path):
    pods = tmp_path / "pods.yaml"
    shutil.copy(ROOT / "configs/demo-pods.yaml", pods)
    args = ["--zone", ZONE, "--reverse-cidr", "10.244.0.0/16", "--pods-file", str(pods), "--reload-interval", "0.1"]
    with ServerProcess(*args) as server:
        assert udp(server.port, KAFKA0).answer
        text = pods.read_text().replace("10.244.1.10", "10.244.1.111")
        pods.write_text(text)
        reply = _wait_answer(server.port, KAFKA0, lambda r: r.answer and r.answer[0][0].address == "10.244.1.111")
        assert reply.answer[0][0].address == "10.244.1.111"

        pods.write_text(text + "\n  - this: [is not closed\n")
        line = server.wait_for_log(r"reload of pods failed.*pods\.yaml:\d+: invalid YAML")
        assert "keeping the last good data" in line
        assert udp(server.port, KAFKA0).answer[0][0].address == "10.244.1.111"

        pods.write_text(text.replace("10.244.1.111", "10.244.1.112"))
        reply = _wait_answer(server.port, KAFKA0, lambda r: r.answer and r.answer[0][0].address == "10.244.1.112")
        assert reply.answer[0][0].address == "10.244.1.112"


def test_hosts_file_reload(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text(f"10.244.0.2 gw.{ZONE}\n")
    args = [
        "--zone",
        ZONE,
        "--reverse-cidr",
        "10.244.0.0/16",
        "--pods-file",
        str(ROOT / "configs/demo-pods.yaml"),
        "--hosts-file",
        str(hosts),
        "--reload-interval",
        "0.1",
    ]
    with ServerProcess(*args) as server:
        assert udp(server.port, f"gw.{ZONE}").answer[0][0].address == "10.244.0.2"
        hosts.write_text(f"10.244.0.2 gw.{ZONE}\nnot-an-ip gw2.{ZONE}\n")
        line = server.wait_for_log(r"reload of hosts failed")
        assert "hosts:2: 'not-an-ip' is not an IP address" in line
        hosts.write_text(f"10.244.0.9 gw.{ZONE}\n")
        reply = _wait_answer(server.port, f"gw.{ZONE}", lambda r: r.answer and r.answer[0][0].address == "10.244.0.9")
        assert reply.answer[0][0].address == "10.244.0.9"


@pytest.mark.parametrize(
    "args,message",
    [
        (["--zone", "bad..zone"], "zones (--zone): 'bad..zone' is not a valid domain name"),
        (["--zone", ZONE, "--reverse-cidr", "10.244.0.0/33"], "reverse_cidrs (--reverse-cidr): '10.244.0.0/33'"),
        (
            ["--zone", ZONE, "--reverse-cidr", "10.244.1.0/16"],
            "reverse_cidrs (--reverse-cidr): '10.244.1.0/16': 10.244.1.0/16 has host bits set",
        ),
        (
            ["--zone", ZONE, "--name-template", "{hostname}.{color}"],
            "name_template (--name-template): '{hostname}.{color}': unknown field {color}",
        ),
        (["--zone", ZONE, "--ttl", "soon"], "ttl (--ttl): 'soon'"),
        (["--zone", ZONE, "--listen", "localhost"], "listen (--listen): 'localhost' is not HOST:PORT"),
        (["--zone", ZONE, "--pods-file", "/nonexistent/pods.yaml"], "pods_file (--pods-file): '/nonexistent/pods.yaml': no such file"),
        ([], "zones (--zone): at least one forward zone is required"),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(args, message):
    result = run_cli("serve", "--listen", "127.0.0.1:0", "--metrics-listen", "off", *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "answering DNS" not in result.stdout + result.stderr


def test_bad_config_file_keys(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"zones: [{ZONE}]\nreverse_cidr: 10.244.0.0/16\n")
    result = run_cli("serve", "--config", str(config))
    assert result.returncode == 2
    assert "config key 'reverse_cidr': unknown" in result.stderr
    config.write_text(f"zones: [{ZONE}]\nreverse_cidrs: [10.0.0.0/8, nonsense]\n")
    result = run_cli("serve", "--config", str(config))
    assert result.returncode == 2
    assert "reverse_cidrs (--reverse-cidr): 'nonsense'" in result.stderr


def test_flags_win_over_config_file(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"zones: [{ZONE}]\npods_file: {ROOT / 'configs/demo-pods.yaml'}\nttl: 300\nlisten: ['127.0.0.1:0']\n")
    with ServerProcess("--config", str(config), "--ttl", "7") as server:
        assert udp(server.port, KAFKA0).answer[0].ttl == 7


def test_broken_pod_file_at_start_exits_2_naming_file_and_line(tmp_path):
    pods = tmp_path / "pods.json"
    pods.write_text('{"kind": "List", "items": [\n  {"metadata": }\n]}')
    result = run_cli("serve", "--zone", ZONE, "--pods-file", str(pods), "--listen", "127.0.0.1:0", "--metrics-listen", "off")
    assert result.returncode == 2
    assert f"{pods}:2: invalid JSON" in result.stderr


def test_export_zone_matches_what_is_served(demo, tmp_path):
    result = run_cli("export-zone", "--config", "configs/demo.yaml", "--output-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    files = sorted(os.listdir(tmp_path))
    assert files == ["244.10.in-addr.arpa.zone", "4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa.zone", f"{ZONE}.zone"]
    forward = dns.zone.from_text((tmp_path / f"{ZONE}.zone").read_text(), origin=ZONE, relativize=False)
    reverse = dns.zone.from_text((tmp_path / "244.10.in-addr.arpa.zone").read_text(), origin="244.10.in-addr.arpa", relativize=False)
    checked = 0
    for zone in (forward, reverse):
        for name, node in zone.nodes.items():
            for rdataset in node.rdatasets:
                if rdataset.rdtype == dns.rdatatype.SOA:
                    continue
                served = udp(demo.port, name.to_text(), dns.rdatatype.to_text(rdataset.rdtype)).answer[0]
                assert sorted(r.to_text() for r in served) == sorted(r.to_text() for r in rdataset)
                assert served.ttl == rdataset.ttl
                checked += 1
    assert checked > 20
    stdout = run_cli("export-zone", "--config", "configs/demo.yaml")
    assert stdout.returncode == 0
    assert f"$ORIGIN {ZONE}." in stdout.stdout and "$ORIGIN 244.10.in-addr.arpa." in stdout.stdout


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_sigterm_exits_zero(frontend):
    server = ServerProcess(*DEMO, "--udp-frontend", frontend)
    with server:
        assert udp(server.port, KAFKA0).answer
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(10) == 0
    server.wait_for_log("stopped")
