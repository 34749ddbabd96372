"""A real forwarding resolver in front, as CoreDNS is in a cluster: Debian's Unbound with stub zones to the server."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import yaml

from tests.conftest import REVERSE_ZONE, ZONE
from tests.helpers import pod
from tests.loopback import free_port
from tests.serverproc import ROOT, ServerProcess
from tests.unboundproc import UnboundProcess

KAFKA0 = f"kafka-0.kafka.default.{ZONE}"
NEGATIVE_TTL = 2


def resolve(port: int, qname: str, qtype: str = "A") -> dns.message.Message:
    """A stub resolver's question (RD set) to Unbound."""
    return dns.query.udp(dns.message.make_query(qname, qtype), "127.0.0.1", port=port, timeout=3)


@pytest.fixture(scope="module")
def pods_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pods") / "pods.yaml"
    shutil.copy(ROOT / "configs/demo-pods.yaml", path)
    return path


@pytest.fixture(scope="module")
def server(pods_file):
    args = ["--config", "configs/demo.yaml", "--pods-file", str(pods_file), "--reload-interval", "0.1", "--negative-ttl", str(NEGATIVE_TTL)]
    with ServerProcess(*args) as running:
        yield running


@pytest.fixture(scope="module")
def unbound(server, tmp_path_factory):
    """Unbound's port; Unbound is stopped when the module's tests are done."""
    directory = tmp_path_factory.mktemp("unbound")
    with UnboundProcess(directory, "127.0.0.1", free_port(), [ZONE, REVERSE_ZONE], server.port) as running:
        yield running.port


def test_forward_and_exactly_one_ptr_through_unbound(unbound):
    reply = resolve(unbound, KAFKA0)
    assert dns.rcode.to_text(reply.rcode()) == "NOERROR"
    assert [r.address for r in reply.answer[0]] == ["10.244.1.10"]

    reverse = resolve(unbound, "10.1.244.10.in-addr.arpa", "PTR")
    ptrs = [r.target.to_text() for rrset in reverse.answer if rrset.rdtype == dns.rdatatype.PTR for r in rrset]
    assert ptrs == [f"{KAFKA0}."]  # exactly one, and the same name forward

    app = resolve(unbound, f"app-0.app.default.{ZONE}", "AAAA")
    assert [r.address for r in app.answer[0]] == ["fd00:10:244:1::40"]
    assert sorted(r.address for r in resolve(unbound, f"kafka.default.{ZONE}").answer[0]) == ["10.244.1.10", "10.244.2.11", "10.244.3.12"]
    # The terminating kdc-1 lost its name: its IP has no PTR, through the resolver too.
    assert dns.rcode.to_text(resolve(unbound, "99.1.244.10.in-addr.arpa", "PTR").rcode()) == "NXDOMAIN"


def test_negative_answer_is_cached_no_longer_than_the_negative_ttl(unbound, server, pods_file):
    name = f"newbie-0.newbie.default.{ZONE}"
    first = resolve(unbound, name)
    cached_at = time.monotonic()
    assert dns.rcode.to_text(first.rcode()) == "NXDOMAIN"
    again = resolve(unbound, name)
    assert dns.rcode.to_text(again.rcode()) == "NXDOMAIN"
    for reply in (first, again):
        (soa,) = [rrset for rrset in reply.authority if rrset.rdtype == dns.rdatatype.SOA]
        assert soa.ttl <= NEGATIVE_TTL

    data = yaml.safe_load(pods_file.read_text())
    data["items"].append(pod("newbie-0", "10.244.5.5", "newbie-0", "newbie", created="2026-11-02T09:00:00Z"))
    staged = pods_file.with_suffix(".new")
    staged.write_text(yaml.safe_dump(data))
    os.replace(staged, pods_file)
    # The server itself serves it as soon as the file is reloaded.
    deadline = time.monotonic() + 10
    while not dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=server.port, timeout=3).answer:
        assert time.monotonic() < deadline, "the server did not pick up the new pod"
        time.sleep(0.05)
    served_at = time.monotonic()

    if served_at - cached_at < NEGATIVE_TTL - 0.5:
        # Still inside the negative TTL: Unbound answers from its cache.
        assert dns.rcode.to_text(resolve(unbound, name).rcode()) == "NXDOMAIN"
    while True:
        reply = resolve(unbound, name)
        if reply.answer:
            break
        # Unbound counts TTLs in whole seconds: a 2 s TTL ends 2 to 3 s after it was cached.
        assert time.monotonic() - cached_at < NEGATIVE_TTL + 1.5, "Unbound kept the NXDOMAIN past the negative TTL"
        time.sleep(0.1)
    assert [r.address for r in reply.answer[-1]] == ["10.244.5.5"]
    assert time.monotonic() - cached_at <= NEGATIVE_TTL + 1.5
