"""Transfers of a big zone through the real server's TCP connections: a client that goes away or stops
reading ends its transfer (the stream is closed, its snapshot let go), a SIGTERM during a slow transfer
finishes it or cuts it between two messages while the lame duck holds, and what export-zone writes and
every AXFR sends loads into BIND's named-checkzone and Knot's kzonecheck."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from tests.conftest import REVERSE_ZONE, ZONE
from tests.helpers import sts_pod
from tests.secondaries import ask, axfr_lines, binary, write_pod_list
from tests.serverproc import ServerProcess, recv_exactly, run_cli

PODS = 30_000  # a forward zone of 60k records, 1.3 MiB of messages
# Transfers asked at once on one connection: more than the kernel's socket buffers hold (4 MiB here),
# so the server has to wait for the reader rather than hand everything to the kernel at once.
PIPELINED = 4


@pytest.fixture(scope="module")
def big_pod_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("big") / "pods.json"
    return write_pod_list(path, [sts_pod(f"s{i // 10}", i % 10, f"10.244.{i // 250}.{i % 250 + 1}", f"ns{i % 7}") for i in range(PODS)])


def server_args(pod_file, *extra: str) -> tuple[str, ...]:
    return (
        "--zone",
        ZONE,
        "--reverse-cidr",
        "10.244.0.0/16",
        "--pods-file",
        str(pod_file),
        "--transfer-allow-unsigned",
        "127.0.0.0/8",
        *extra,
    )


def slow_socket(port: int) -> socket.socket:
    """A TCP connection whose receive buffer is small, so the server can get ahead of it only a little."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    return sock


def send_axfrs(sock: socket.socket, count: int = PIPELINED) -> None:
    """`count` AXFRs of the forward zone, pipelined."""
    query = dns.message.make_query(ZONE, "AXFR").to_wire()
    sock.sendall((len(query).to_bytes(2, "big") + query) * count)


def next_message(sock: socket.socket) -> bytes | None:
    """One framed message; None when the server closed the connection between two messages."""
    head = sock.recv(2, socket.MSG_WAITALL)
    if not head:
        return None
    assert len(head) == 2, "the connection ended inside a length prefix"
    return recv_exactly(sock, int.from_bytes(head, "big"))  # ConnectionError if it ends inside a message


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def aborted_lines(server: ServerProcess) -> list[str]:
    return [line for line in list(server.lines) if re.search(rf"transfer AXFR aborted zone={re.escape(ZONE)}\.", line)]


def test_a_client_that_goes_away_or_stops_reading_ends_its_transfer(big_pod_file):
    with ServerProcess(*server_args(big_pod_file, "--tcp-idle-timeout", "1", "--metrics-listen", "127.0.0.1:0")) as server:
        gone = slow_socket(server.port)
        send_axfrs(gone)
        assert next_message(gone) is not None
        gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close with a reset
        gone.close()
        deadline = time.monotonic() + 10
        while not aborted_lines(server):
            assert time.monotonic() < deadline, "the transfer to a client that went away did not end:\n" + "\n".join(server.lines)
            time.sleep(0.05)

        stalled = slow_socket(server.port)
        send_axfrs(stalled)
        assert next_message(stalled) is not None  # then read nothing more: after one idle timeout it is cut
        while len(aborted_lines(server)) < 2:
            assert time.monotonic() < deadline, "the transfer to a stalled client was not cut:\n" + "\n".join(server.lines)
            time.sleep(0.05)
        stalled.close()
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).read().decode()
        assert re.search(r'poddns_tcp_closed_total\{reason="stalled"\} 1\.0', metrics)
        assert re.search(r'poddns_transfers_total\{result="aborted",type="axfr"\} 2\.0', metrics)
        assert ask(server.port, ZONE, "SOA").rcode() == dns.rcode.NOERROR  # and the server answers as before


def test_sigterm_during_a_slow_transfer_finishes_or_cuts_it_cleanly_and_the_lame_duck_holds(big_pod_file):
    with ServerProcess(*server_args(big_pod_file, "--lameduck", "1", "--metrics-listen", "127.0.0.1:0")) as server:
        server.wait_for_log(r"transfer messages kept in \d+ ms")  # ready once the first warm-up is done
        assert readyz(server.metrics_port) == 200
        sock = slow_socket(server.port)
        send_axfrs(sock)
        messages = [next_message(sock)]
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        assert readyz(server.metrics_port) == 503  # readiness fails first
        answered_in_lame_duck = 0
        started = time.monotonic()
        ended = "closed"
        while True:
            try:
                message = next_message(sock)
            except ConnectionError:  # reset: what was in flight is lost, what came before it is whole
                ended = "reset"
                break
            if message is None:
                break
            messages.append(message)
            if time.monotonic() - started < 0.8:  # well inside the 1 s lame duck: UDP is still answered
                answered_in_lame_duck += ask(server.port, ZONE, "SOA").rcode() == dns.rcode.NOERROR
            if server.proc.poll() is None:  # a slow reader (about half a megabyte a second) while the server runs,
                time.sleep(0.03)  # then what the kernel still holds for us is read at once
        sock.close()
        assert server.proc.wait(15) == 0
    assert answered_in_lame_duck > 0
    # Whole transfers: the records of each transfer, counted in the headers, then its last message ends with the SOA.
    per_transfer = int(re.search(r"transfer AXFR full .* records=(\d+) ", "\n".join(server.lines))[1])
    whole, running = 0, 0
    for message in messages:
        assert message is not None
        running += int.from_bytes(message[6:8], "big")
        if running == per_transfer:
            assert dns.message.from_wire(message, xfr=True).answer[-1].rdtype == dns.rdatatype.SOA
            whole, running = whole + 1, 0
        assert running < per_transfer
    parsed = messages
    cut = any("cut 1 TCP connections" in line for line in server.lines)
    print(f"{len(parsed)} messages, {whole} of {PIPELINED} transfers whole, connection {ended}; {'cut' if cut else 'not cut'} at shutdown")
    assert whole == PIPELINED or cut
    assert not (whole == PIPELINED and cut)


def check_zone(zone: str, path: str) -> None:
    """named-checkzone and kzonecheck both load the file without an error."""
    bind = subprocess.run([binary("named-checkzone", "bind9-utils"), "-i", "full", zone, path], capture_output=True, text=True)
    assert bind.returncode == 0 and "OK" in bind.stdout, f"named-checkzone {zone}:\n{bind.stdout}{bind.stderr}"
    knot = subprocess.run([binary("kzonecheck", "knot-dnssecutils"), "-o", zone, path], capture_output=True, text=True)
    assert knot.returncode == 0, f"kzonecheck {zone}:\n{knot.stdout}{knot.stderr}"


NS_CHOICES = {
    "default": (),
    # two in-zone names with an address of each family, and one out of every served zone
    "several": ("--ns-name", f"ns1.{ZONE}", "--ns-name", f"ns2.{ZONE}", "--ns-name", "ns.elsewhere.example"),
}


@pytest.mark.parametrize("ns", sorted(NS_CHOICES))
def test_export_zone_and_every_axfr_load_into_bind_and_knot(tmp_path, ns):
    pod_file = write_pod_list(
        tmp_path / "pods.json", [sts_pod(f"s{i // 10}", i % 10, f"10.244.{i // 250}.{i % 250 + 1}") for i in range(500)]
    )
    ns_args = NS_CHOICES[ns] + (("--ns-address", "192.0.2.53", "--ns-address", "2001:db8::53") if ns != "default" else ())
    args = server_args(pod_file, *ns_args)
    out = tmp_path / "export"
    zone_args = ("--zone", ZONE, "--reverse-cidr", "10.244.0.0/16", "--pods-file", str(pod_file), *ns_args)  # no transfer flags
    exported = run_cli("export-zone", *zone_args, "--output-dir", str(out))
    assert exported.returncode == 0, exported.stderr
    assert sorted(path.name for path in out.iterdir()) == sorted(f"{zone}.zone" for zone in (ZONE, REVERSE_ZONE))
    for zone in (ZONE, REVERSE_ZONE):
        check_zone(zone, str(out / f"{zone}.zone"))
    with ServerProcess(*args) as server:
        for zone in (ZONE, REVERSE_ZONE):
            path = tmp_path / f"{zone}.axfr"
            lines = axfr_lines(server.port, zone)
            path.write_text("\n".join(lines) + "\n")
            check_zone(zone, str(path))
            if ns != "default":
                served = sorted(line.split()[-1] for line in lines if line.split()[:1] == [f"{zone}."] and " IN NS " in line)
                assert served == sorted(f"{name.rstrip('.')}." for name in NS_CHOICES[ns][1::2])
                if zone == ZONE:  # the in-zone NS names carry the addresses (glue a secondary needs)
                    for name in (f"ns1.{ZONE}.", f"ns2.{ZONE}."):
                        held = sorted(line.split(" ", 3)[3] for line in lines if line.startswith(name + " "))
                        assert held == ["A 192.0.2.53", "AAAA 2001:db8::53"], (name, held)


def test_the_demo_axfr_holds_what_export_zone_writes_srv_and_the_records_file_included(tmp_path):
    """Every record kind the demo serves (pods' SRV, hosts entries, the records file's types) travels in AXFR,
    exactly as export-zone writes it (the SOA aside: its serial is the running server's)."""
    import dns.zone

    out = tmp_path / "export"
    exported = run_cli("export-zone", "--config", "configs/demo.yaml", "--output-dir", str(out))
    assert exported.returncode == 0, exported.stderr
    with ServerProcess(
        "--config", "configs/demo.yaml", "--metrics-listen", "127.0.0.1:0", "--transfer-allow-unsigned", "127.0.0.0/8"
    ) as server:
        transferred = [line for line in axfr_lines(server.port, ZONE) if " IN SOA " not in line]
    zone = dns.zone.from_file(str(out / f"{ZONE}.zone"), ZONE, relativize=False)
    written = sorted(
        f"{name.to_text()} {rdataset.ttl} IN {dns.rdatatype.to_text(rdataset.rdtype)} {rdata.to_text()}"
        for name, rdataset in zone.iterate_rdatasets()
        if rdataset.rdtype != dns.rdatatype.SOA
        for rdata in rdataset
    )
    assert transferred == written
    kinds = {line.split()[3] for line in transferred}
    assert {"SRV", "TXT", "CNAME", "MX", "CAA", "A", "AAAA", "NS"} <= kinds
    assert f"_kafka._tcp.kafka.default.{ZONE}. 30 IN SRV 0 1 9092 kafka-0.kafka.default.{ZONE}." in transferred
    assert f"_kerberos._udp.{ZONE}. 300 IN SRV 0 0 88 kdc-1.kdc.security.{ZONE}." in transferred
