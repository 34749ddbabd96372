"""The two ways forward confirmation broke, over real sockets with dig and dnspython.

1. kafka-1 (older) and kafka-2 both report 10.244.3.12: the PTR is kafka-1's,
   and kafka-2's name must not answer with that address.
2. A hosts line `10.244.9.9 kafka-0.kafka.default.<zone>` loses its name to the
   pod: its address must not get a PTR to kafka-0's name.
"""

from __future__ import annotations

import json
import subprocess

import dns.message
import dns.query
import dns.rcode

from tests.conftest import ZONE
from tests.helpers import sts_pod
from tests.serverproc import ServerProcess

KAFKA0, KAFKA1, KAFKA2 = (f"kafka-{i}.kafka.default.{ZONE}" for i in range(3))


def _dig(port: int, *args: str) -> list[str]:
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(port), "+short", "+tries=1", "+time=3", *args], capture_output=True, text=True, timeout=15
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def _rcode(port: int, name: str, qtype: str = "A") -> str:
    reply = dns.query.udp(dns.message.make_query(name, qtype), "127.0.0.1", port=port, timeout=3)
    return dns.rcode.to_text(reply.rcode())


def test_loser_of_a_shared_ip_and_a_static_line_that_lost_its_name(tmp_path):
    pods = [
        sts_pod("kafka", 0, "10.244.1.10", created="2026-11-01T10:00:00Z"),
        sts_pod("kafka", 1, "10.244.3.12", created="2026-11-01T10:00:00Z"),
        sts_pod("kafka", 2, ["10.244.3.12", "fd00:10:244:3::13"], created="2026-11-02T10:00:00Z"),
    ]
    pods_file = tmp_path / "pods.json"
    pods_file.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}))
    hosts_file = tmp_path / "hosts"
    hosts_file.write_text(f"10.244.9.9 {KAFKA0}\n10.244.9.10 {KAFKA0} kafka-bootstrap.{ZONE}\n")
    args = ["--zone", ZONE, "--reverse-cidr", "10.244.0.0/16", "--reverse-cidr", "fd00:10:244::/48"]
    with ServerProcess(*args, "--pods-file", str(pods_file), "--hosts-file", str(hosts_file)) as server:
        port = server.port
        # 1. The PTR of the shared IP is the older pod's, and only that pod's name holds it.
        assert _dig(port, "-x", "10.244.3.12") == [f"{KAFKA1}."]
        assert _dig(port, KAFKA1) == ["10.244.3.12"]
        assert _dig(port, KAFKA2) == []  # no IPv4 address left for kafka-2
        assert _dig(port, KAFKA2, "AAAA") == ["fd00:10:244:3::13"]  # its own IPv6 address stays
        assert _dig(port, "-x", "fd00:10:244:3::13") == [f"{KAFKA2}."]
        assert sorted(_dig(port, f"kafka.default.{ZONE}")) == ["10.244.1.10", "10.244.3.12"]  # the set: each IP once
        # 2. The static lines lost kafka-0's name to the pod: no PTR to it from their addresses.
        assert _dig(port, KAFKA0) == ["10.244.1.10"]
        assert _rcode(port, "9.9.244.10.in-addr.arpa", "PTR") == "NXDOMAIN"
        assert _dig(port, "-x", "10.244.9.10") == [f"kafka-bootstrap.{ZONE}."]  # the line's first name it still owns
        assert _dig(port, f"kafka-bootstrap.{ZONE}") == ["10.244.9.10"]
        assert any("conflict on ip 10.244.3.12" in line and "default/kafka-1" in line for line in server.lines)
