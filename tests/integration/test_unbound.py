"""A real forwarding resolver in front, as CoreDNS is in a cluster: Debian's Unbound with stub zones to the server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import yaml

from tests.conftest import REVERSE_ZONE, ZONE
from tests.helpers import pod
from tests.serverproc import ROOT, ServerProcess

KAFKA0 = f"kafka-0.kafka.default.{ZONE}"
NEGATIVE_TTL = 2


def _unbound_binary() -> str:
    found = shutil.which("unbound", path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin" + os.pathsep + "/sbin")
    assert found, "Unbound is missing: run scripts/setup-tests.sh (apt-get install unbound)"
    return found


def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (Unbound listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def unbound_config(directory: Path, port: int, server_port: int) -> str:
    return f"""\
server:
    interface: 127.0.0.1
    port: {port}
    do-ip6: no
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{directory}"
    pidfile: "{directory}/unbound.pid"
    logfile: "{directory}/unbound.log"
    use-syslog: no
    verbosity: 1
    num-threads: 1
    so-reuseport: no
    access-control: 127.0.0.0/8 allow
    # Our server is on localhost, which Unbound refuses to ask by default.
    do-not-query-localhost: no
    # No validator: the private zones are unsigned.
    module-config: "iterator"
    # 10.in-addr.arpa is one of the RFC 1918 zones Unbound answers itself (empty) by default.
    local-zone: "10.in-addr.arpa." nodefault

remote-control:
    control-enable: no

stub-zone:
    name: "{ZONE}"
    stub-addr: 127.0.0.1@{server_port}

stub-zone:
    name: "{REVERSE_ZONE}"
    stub-addr: 127.0.0.1@{server_port}
"""


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
    binary = _unbound_binary()
    directory = tmp_path_factory.mktemp("unbound")
    port = _free_port()
    config = directory / "unbound.conf"
    config.write_text(unbound_config(directory, port, server.port))
    check = subprocess.run([binary.replace("unbound", "unbound-checkconf"), str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    proc = subprocess.Popen([binary, "-d", "-c", str(config)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, f"unbound exited with {proc.returncode}: {_unbound_log(directory, proc)}"
            try:
                resolve(port, ZONE, "SOA")
                break
            except (dns.exception.Timeout, ConnectionRefusedError, OSError):
                assert time.monotonic() < deadline, f"unbound did not answer: {_unbound_log(directory, proc)}"
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _unbound_log(directory: Path, proc: subprocess.Popen) -> str:
    log = directory / "unbound.log"
    text = log.read_text() if log.exists() else ""
    if proc.poll() is not None and proc.stdout:
        text += proc.stdout.read().decode(errors="replace")
    return text


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
