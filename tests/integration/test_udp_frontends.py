"""Both UDP front ends of the real server (--udp-frontend batched and uvloop): a flood, long queries, the log line."""

from __future__ import annotations

import random
import socket
import time

import dns.message
import dns.rcode
import pytest

from tests.conftest import ZONE
from tests.serverproc import ServerProcess, has_ipv6_loopback

DEMO = ["--config", "configs/demo.yaml", "--metrics-listen", "off"]
ANSWERS = {  # from configs/demo-pods.yaml
    f"kafka-0.kafka.default.{ZONE}": "10.244.1.10",
    f"kafka-1.kafka.default.{ZONE}": "10.244.2.11",
    f"kafka-2.kafka.default.{ZONE}": "10.244.3.12",
    f"zk-0.zk.default.{ZONE}": "10.244.1.20",
}
NEEDS_IPV6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no ::1")


def flood(host: str, port: int, total: int, sockets: int = 8, window: int = 25, garbage_every: int = 4) -> tuple[int, int]:
    """`total` valid A queries as fast as the replies allow, `window` in flight per socket, with a garbage
    datagram after every `garbage_every` of them: (valid queries answered right, valid queries lost).

    In flight at once is far below what the server's receive buffer holds, so
    nothing may be lost to a full buffer: a lost query is the front end's.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    rng = random.Random(3)
    wires = {name: bytearray(dns.message.make_query(name, "A").to_wire()) for name in ANSWERS}
    expected = {name: socket.inet_aton(address) for name, address in ANSWERS.items()}
    names = list(ANSWERS)
    clients = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(sockets)]
    pending: list[dict[int, str]] = [{} for _ in clients]  # per socket: query id -> name
    sent = answered = 0
    next_id = 0
    last_progress = time.monotonic()
    try:
        for client in clients:
            client.setblocking(False)
            client.connect((host, port))
        while answered < total and time.monotonic() - last_progress < 5:
            progress = False
            for client, waiting in zip(clients, pending):
                while True:
                    try:
                        reply = client.recv(65535)
                    except BlockingIOError:
                        break
                    qid = int.from_bytes(reply[:2], "big")
                    name = waiting.pop(qid, None)
                    if name is None:
                        continue  # a reply to garbage (its ID is 0xffff)
                    if reply[3] & 0xF == 0 and reply[-4:] == expected[name]:
                        answered += 1
                    progress = True
                while len(waiting) < window and sent < total:
                    name = names[sent % len(names)]
                    wire = wires[name]
                    next_id = next_id % 0xFFFE + 1
                    wire[0:2] = next_id.to_bytes(2, "big")
                    waiting[next_id] = name
                    client.send(wire)
                    sent += 1
                    if sent % garbage_every == 0:
                        client.send(b"\xff\xff" + rng.randbytes(rng.randrange(0, 300)))
                    progress = True
            if progress:
                last_progress = time.monotonic()
            else:
                time.sleep(0.0005)
    finally:
        for client in clients:
            client.close()
    return answered, total - answered


@pytest.mark.parametrize(
    "host,total",
    [pytest.param("127.0.0.1", 12000, id="ipv4"), pytest.param("::1", 4000, id="ipv6", marks=NEEDS_IPV6)],
)
def test_a_flood_with_garbage_loses_no_valid_query_on_either_front_end(host, total):
    lost = {}
    for frontend, batch in (("uvloop", "32"), ("batched", "32"), ("batched", "1")):
        with ServerProcess(
            *DEMO, "--listen", f"[{host}]:0" if ":" in host else f"{host}:0", "--udp-frontend", frontend, "--udp-batch", batch
        ) as server:
            answered, lost[(frontend, batch)] = flood(host, server.port, total)
            assert answered + lost[(frontend, batch)] == total
    assert lost == {("uvloop", "32"): 0, ("batched", "32"): 0, ("batched", "1"): 0}


@pytest.mark.parametrize("frontend", ["batched", "uvloop"])
def test_the_log_says_which_front_end_serves_udp(frontend):
    with ServerProcess(*DEMO, "--udp-frontend", frontend, "--udp-batch", "16") as server:
        line = server.wait_for_log("answering DNS on")
    expected = "UDP batched, up to 16 per system call" if frontend == "batched" else "UDP uvloop datagrams"
    assert f"(UDP and TCP; {expected})" in line


def test_a_query_longer_than_the_read_buffer_gets_the_same_formerr_from_both_front_ends():
    """Read at most 4096 bytes of a UDP query (UDP_QUERY_MAX): a longer one is answered FORMERR, alike by both."""
    query = dns.message.make_query(f"kafka-0.kafka.default.{ZONE}", "A", use_edns=0, payload=1232)
    query.use_edns(0, 0, 1232, options=[dns.edns.GenericOption(65001, b"p" * 5000)])
    long_wire = query.to_wire(max_size=65535)
    short = dns.message.make_query(f"kafka-0.kafka.default.{ZONE}", "A", use_edns=0, payload=1232)
    short.use_edns(0, 0, 1232, options=[dns.edns.GenericOption(65001, b"p" * 3000)])
    replies = {}
    for frontend in ("batched", "uvloop"):
        with ServerProcess(*DEMO, "--udp-frontend", frontend) as server:
            got = []
            for wire in (long_wire, short.to_wire(max_size=65535)):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    sock.settimeout(3)
                    sock.sendto(wire, ("127.0.0.1", server.port))
                    got.append(sock.recv(65535))
            replies[frontend] = got
    assert replies["batched"] == replies["uvloop"]
    cut, whole = replies["batched"]
    assert cut[:2] == long_wire[:2] and cut[2] & 0x80 and cut[3] & 0xF == dns.rcode.FORMERR
    assert dns.message.from_wire(whole).answer[0][0].address == "10.244.1.10"  # 3 KB is read whole
