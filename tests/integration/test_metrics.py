"""The metrics port of the real server: exact counters for a known set of queries, state gauges, /debug/identities."""

from __future__ import annotations

import ipaddress
import json
import shutil
import socket
import struct
import time
import urllib.error
import urllib.request

import dns.edns
import dns.message
import dns.rcode
import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.ops.metrics import Observer
from server.serve.tcppool import CLOSE_REASONS
from server.zone.fastpath import respond
from tests.conftest import ZONE
from tests.fakekube import FakeKubeThread, make_pod
from tests.helpers import build, sts_pod
from tests.serverproc import ROOT, ServerProcess, has_ipv6_loopback, read_tcp_frame

KAFKA0 = f"kafka-0.kafka.default.{ZONE}"
DEMO = ["--config", "configs/demo.yaml", "--metrics-listen", "127.0.0.1:0"]


def http_get(port: int, path: str, accept: str | None = None) -> tuple[int, str, str]:
    """(status, content type, body) of GET http://127.0.0.1:port/path."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def get_identities(port: int, query: str = "") -> tuple[int, str, str]:
    """GET /debug/identities as a polite client: after a 429, wait as Retry-After says and ask again."""
    for _ in range(20):
        status, content_type, body = http_get(port, "/debug/identities" + query)
        if status != 429:
            return status, content_type, body
        time.sleep(1.05)
    raise AssertionError("/debug/identities answered 429 twenty times")


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics as {(sample name, frozenset of label items): value}."""
    status, _, text = http_get(port, "/metrics")
    assert status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def ask_udp(port: int, query: dns.message.Message) -> tuple[bytes, bytes]:
    """(query wire, reply wire) over UDP."""
    wire = query.to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(wire, ("127.0.0.1", port))
        reply, _ = sock.recvfrom(65535)
    return wire, reply


def ask_tcp(port: int, query: dns.message.Message) -> tuple[bytes, bytes]:
    wire = query.to_wire()
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.sendall(struct.pack("!H", len(wire)) + wire)
        return wire, read_tcp_frame(sock)


def test_odd_packets_are_counted_without_breaking_the_handler():
    """No sockets: the wrapped handler over the real answer function, fed packets of every shape."""
    view, _ = build([sts_pod("kafka", 0, "10.244.1.10")])
    observer = Observer()
    handler = observer.wrap_handler(lambda query, tcp, peer: respond(query, view, tcp), socket.AF_INET, False)
    name = f"kafka-0.kafka.default.{ZONE}"
    plain = dns.message.make_query(name, "AAAA").to_wire()
    response = bytearray(plain)
    response[2] |= 0x80
    packets = {
        b"": "other",  # empty
        b"\x12\x34\x01": "other",  # runt
        plain[:12]: "other",  # a header and nothing else
        plain[:-3]: "other",  # question cut short: FORMERR
        plain: "AAAA",
        dns.message.make_query(name, "PTR", use_edns=0).to_wire(): "PTR",
        dns.message.make_query(name, "TXT", use_edns=0, options=[dns.edns.GenericOption(10, b"abcdefgh")]).to_wire(): "TXT",
        bytes(response): "AAAA",  # a response: no reply
    }
    for packet in packets:
        handler(packet, False, ("127.0.0.1", 5300))
    samples = {(sample.name, frozenset(sample.labels.items())): sample.value for family in observer.collect() for sample in family.samples}
    by_type = {qtype: 0 for qtype in ("A", "AAAA", "PTR", "SOA", "NS", "ANY", "TXT", "other")}
    for qtype in packets.values():
        by_type[qtype] += 1
    for qtype, count in by_type.items():
        assert value(samples, "poddns_dns_requests_total", proto="udp", family="1", type=qtype) == count, qtype
    # Replies: FORMERR for the header-only and the cut packets, NOERROR for the three good ones.
    assert value(samples, "poddns_dns_responses_total", rcode="FORMERR") == 2
    assert value(samples, "poddns_dns_responses_total", rcode="NOERROR") == 3
    assert value(samples, "poddns_dns_request_duration_seconds_count") == len(packets)
    assert value(samples, "poddns_dns_request_size_bytes_sum", proto="udp") == sum(map(len, packets))
    assert value(samples, "poddns_dns_response_size_bytes_count", proto="udp") == 5


@pytest.mark.parametrize("frontend", ["batched", "uvloop"])
def test_counters_show_exactly_the_queries_sent(frontend):
    cookie = dns.edns.GenericOption(dns.edns.COOKIE, b"\x01\x02\x03\x04\x05\x06\x07\x08")
    udp_queries = [
        # 5 A that exist, without EDNS, with EDNS, with an EDNS option (each finds the qtype its own way)
        (dns.message.make_query(KAFKA0, "A"), "NOERROR"),
        (dns.message.make_query(f"kafka-1.kafka.default.{ZONE}", "A", use_edns=0), "NOERROR"),
        (dns.message.make_query(f"kafka-2.kafka.default.{ZONE}", "A", use_edns=0, options=[cookie]), "NOERROR"),
        (dns.message.make_query(f"zk-0.zk.default.{ZONE}", "A"), "NOERROR"),
        (dns.message.make_query(f"zk-1.zk.default.{ZONE}", "A", use_edns=0), "NOERROR"),
        # 2 NXDOMAIN, 1 REFUSED, all A
        (dns.message.make_query(f"nope-1.kafka.default.{ZONE}", "A"), "NXDOMAIN"),
        (dns.message.make_query(f"nope-2.kafka.default.{ZONE}", "A", use_edns=0), "NXDOMAIN"),
        (dns.message.make_query("www.example.com", "A"), "REFUSED"),
        # a type outside the labelled set: counted as "other" (NODATA)
        (dns.message.make_query(KAFKA0, "MX"), "NOERROR"),
    ]
    tcp_queries = [
        (dns.message.make_query(name, "PTR"), "NOERROR")
        for name in ("10.1.244.10.in-addr.arpa", "11.2.244.10.in-addr.arpa", "12.3.244.10.in-addr.arpa")
    ]
    sizes = {"udp": [0, 0], "tcp": [0, 0]}  # request bytes, response bytes
    with ServerProcess(*DEMO, "--udp-frontend", frontend) as server:
        for proto, ask, queries in (("udp", ask_udp, udp_queries), ("tcp", ask_tcp, tcp_queries)):
            for query, rcode in queries:
                wire, reply = ask(server.port, query)
                assert dns.rcode.to_text(dns.message.from_wire(reply).rcode()) == rcode, query.question
                sizes[proto][0] += len(wire)
                sizes[proto][1] += len(reply)
        samples = scrape(server.metrics_port)

    requests = {
        (dict(labels)["proto"], dict(labels)["type"]): count
        for (name, labels), count in samples.items()
        if name == "poddns_dns_requests_total"
    }
    expected = {(proto, qtype): 0 for proto in ("udp", "tcp") for qtype in ("A", "AAAA", "PTR", "SOA", "NS", "ANY", "TXT", "other")}
    expected.update({("udp", "A"): 8, ("udp", "other"): 1, ("tcp", "PTR"): 3})
    assert requests == expected
    assert all(dict(labels)["family"] == "1" for name, labels in samples if name == "poddns_dns_requests_total")

    assert value(samples, "poddns_dns_responses_total", rcode="NOERROR") == 9
    assert value(samples, "poddns_dns_responses_total", rcode="NXDOMAIN") == 2
    assert value(samples, "poddns_dns_responses_total", rcode="REFUSED") == 1
    assert value(samples, "poddns_dns_responses_total", rcode="SERVFAIL") == 0

    assert value(samples, "poddns_dns_request_duration_seconds_count") == 12
    assert value(samples, "poddns_dns_request_duration_seconds_bucket", le="+Inf") == 12
    assert 0 < value(samples, "poddns_dns_request_duration_seconds_sum") < 12
    for proto, count in (("udp", 9), ("tcp", 3)):
        assert value(samples, "poddns_dns_request_size_bytes_count", proto=proto) == count
        assert value(samples, "poddns_dns_response_size_bytes_count", proto=proto) == count
        assert value(samples, "poddns_dns_request_size_bytes_sum", proto=proto) == sizes[proto][0]
        assert value(samples, "poddns_dns_response_size_bytes_sum", proto=proto) == sizes[proto][1]
    # Each TCP query came on a connection of its own, which the client then closed.
    closes = {dict(labels)["reason"]: count for (name, labels), count in samples.items() if name == "poddns_tcp_closed_total"}
    assert closes == {reason: (3 if reason == "client" else 0) for reason in CLOSE_REASONS}
    assert value(samples, "poddns_tcp_connections") == 0
    # Every query here is under 100 bytes: all in the le=100 bucket, none in le=0.
    assert value(samples, "poddns_dns_request_size_bytes_bucket", proto="udp", le="0.0") == 0
    assert value(samples, "poddns_dns_request_size_bytes_bucket", proto="udp", le="100.0") == 9


def test_state_gauges_build_info_and_no_created_series():
    with ServerProcess(*DEMO) as server:
        soa = dns.message.from_wire(ask_udp(server.port, dns.message.make_query(ZONE, "SOA"))[1])
        badvers = dns.message.from_wire(ask_udp(server.port, dns.message.make_query(KAFKA0, "A", use_edns=1))[1])
        assert badvers.rcode() == dns.rcode.BADVERS
        samples = scrape(server.metrics_port)
        status, content_type, text = http_get(server.metrics_port, "/metrics")
        status_om, content_type_om, text_om = http_get(
            server.metrics_port, "/metrics", accept="application/openmetrics-text; version=1.0.0"
        )

    assert value(samples, "poddns_dns_responses_total", rcode="BADVERS") == 1  # an extended rcode, from the OPT
    assert value(samples, "poddns_dns_responses_total", rcode="NOERROR") == 1
    assert value(samples, "poddns_records", kind="forward_names") >= 9
    assert value(samples, "poddns_records", kind="ptrs") >= 10
    assert value(samples, "poddns_records", kind="static_entries") == 3
    assert value(samples, "poddns_records", kind="srv") == 7  # kafka's three members and their set, two KDCs and theirs
    assert value(samples, "poddns_records", kind="static_records") == 7  # the RRsets of configs/demo-records.zone
    assert value(samples, "poddns_identity_conflicts") == 1  # the terminating kdc-1
    assert value(samples, "poddns_zone_serial", zone=f"{ZONE}.") == soa.answer[0][0].serial
    assert ("poddns_zone_serial", frozenset({("zone", "244.10.in-addr.arpa.")})) in samples
    assert value(samples, "poddns_ready") == 1
    build = [labels for name, labels in samples if name == "poddns_build_info"]
    assert len(build) == 1 and dict(build[0])["version"] == "0.1.0"
    assert value(samples, "poddns_build_info", **dict(build[0])) == 1
    assert value(samples, "poddns_file_reloads_total", file="pods", result="success") == 1
    assert value(samples, "poddns_file_reloads_total", file="hosts", result="success") == 1
    assert not any(name.startswith("poddns_kubernetes") for name, _ in samples)  # no cluster here
    assert any(name == "process_resident_memory_bytes" for name, _ in samples)

    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    assert status_om == 200 and content_type_om.startswith("application/openmetrics-text")
    for body in (text, text_om):
        assert "_created" not in body
    assert text_om.rstrip().endswith("# EOF")


def test_debug_identities_and_reload_counter(tmp_path):
    pods = tmp_path / "pods.yaml"
    shutil.copy(ROOT / "configs/demo-pods.yaml", pods)
    args = [*DEMO, "--pods-file", str(pods), "--reload-interval", "0.1"]
    with ServerProcess(*args) as server:
        status, content_type, body = get_identities(server.metrics_port)
        assert status == 200 and content_type.startswith("application/json")
        described = json.loads(body)
        (kafka,) = [i for i in described["identities"] if i["name"] == f"{KAFKA0}."]
        assert kafka["ips"] == ["10.244.1.10"] and kafka["pod"] == "default/kafka-0"
        kdc = [c for c in described["conflicts"] if c["subject"].startswith("kdc-1.kdc.security.")]
        assert len(kdc) == 1
        assert "kdc-1-6d9f7c5b8-x2x7q" in kdc[0]["winner"] and "kdc-1-7f8a9b6c5-h4j8n" in kdc[0]["loser"]
        assert described["stats"]["conflicts"] == 1

        serial = value(scrape(server.metrics_port), "poddns_zone_serial", zone=f"{ZONE}.")
        pods.write_text(pods.read_text().replace("10.244.1.10", "10.244.1.111"))
        samples = _wait_for(server.metrics_port, "poddns_file_reloads_total", 2, file="pods", result="success")
        assert value(samples, "poddns_file_reloads_total", file="pods", result="error") == 0
        assert value(samples, "poddns_zone_serial", zone=f"{ZONE}.") > serial
        (kafka,) = [i for i in json.loads(get_identities(server.metrics_port)[2])["identities"] if i["name"] == f"{KAFKA0}."]
        assert kafka["ips"] == ["10.244.1.111"]

        pods.write_text("items: [this is not closed\n")
        samples = _wait_for(server.metrics_port, "poddns_file_reloads_total", 1, file="pods", result="error")
        assert value(samples, "poddns_file_reloads_total", file="pods", result="success") == 2

        assert http_get(server.metrics_port, "/nothing-here")[0] == 404


def _wait_for(port: int, name: str, expected: float, timeout: float = 10.0, **labels: str) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(port)
        if samples.get((name, frozenset(labels.items()))) == expected or time.monotonic() > deadline:
            assert value(samples, name, **labels) == expected
            return samples
        time.sleep(0.05)


@pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no ::1")
@pytest.mark.parametrize("frontend", ["batched", "uvloop"])
def test_ipv6_listener_counts_as_family_2(frontend):
    with ServerProcess(*DEMO, "--listen", "127.0.0.1:0", "--listen", "[::1]:0", "--udp-frontend", frontend) as server:
        port6 = dict(server.ports)["::1"]
        wire = dns.message.make_query(KAFKA0, "AAAA").to_wire()
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.settimeout(3)
            sock.sendto(wire, ("::1", port6))
            sock.recvfrom(65535)
        samples = scrape(server.metrics_port)
    assert value(samples, "poddns_dns_requests_total", proto="udp", family="2", type="AAAA") == 1
    assert value(samples, "poddns_dns_requests_total", proto="udp", family="1", type="AAAA") == 0


def test_kubernetes_source_metrics(tmp_path):
    def answers(port: int, name: str) -> list[str]:
        reply = dns.message.from_wire(ask_udp(port, dns.message.make_query(name, "A"))[1])
        return [r.address for rrset in reply.answer for r in rrset]

    def wait(predicate, what: str) -> None:
        deadline = time.monotonic() + 10
        while not predicate():
            assert time.monotonic() < deadline, what
            time.sleep(0.02)

    name = f"web-1.web.default.{ZONE}"
    with FakeKubeThread() as fake:
        kubeconfig = fake.kube.write_kubeconfig(tmp_path / "kubeconfig")
        fake.call(fake.kube.add_pod, make_pod("web-0", ip="10.244.0.10", hostname="web-0", subdomain="web"))
        args = ["--zone", ZONE, "--reverse-cidr", "10.244.0.0/16", "--kubeconfig", str(kubeconfig), "--metrics-listen", "127.0.0.1:0"]
        with ServerProcess(*args) as server:
            port, metrics = server.port, server.metrics_port
            wait(lambda: http_get(metrics, "/readyz")[0] == 200, "never ready")
            samples = scrape(metrics)
            assert value(samples, "poddns_kubernetes_synced") == 1
            assert value(samples, "poddns_kubernetes_events_total", type="ADDED") == 0  # the list is not events

            fake.call(fake.kube.add_pod, make_pod("web-1", ip="10.244.0.11", hostname="web-1", subdomain="web"))
            wait(lambda: answers(port, name) == ["10.244.0.11"], "ADDED not applied")

            def move(pod):
                pod["status"]["podIP"] = "10.244.0.12"
                pod["status"]["podIPs"] = [{"ip": "10.244.0.12"}]

            fake.call(fake.kube.modify_pod, "default", "web-1", move)
            wait(lambda: answers(port, name) == ["10.244.0.12"], "MODIFIED not applied")
            fake.call(fake.kube.delete_pod, "default", "web-1")
            wait(lambda: answers(port, name) == [], "DELETED not applied")
            wait(lambda: fake.call(lambda: fake.kube.open_watches) == 1, "no watch open")
            fake.call(fake.kube.send_bookmark)
            wait(lambda: value(scrape(metrics), "poddns_kubernetes_events_total", type="BOOKMARK") == 1, "no BOOKMARK")
            fake.call(fake.kube.drop_watches)
            wait(lambda: value(scrape(metrics), "poddns_kubernetes_watch_restarts_total") >= 1, "no watch restart")
            wait(lambda: fake.call(lambda: fake.kube.open_watches) == 1, "the watch was not resumed")
            fake.call(fake.kube.send_error)  # 410 Gone: list again
            wait(lambda: value(scrape(metrics), "poddns_kubernetes_relists_total") == 1, "no relist")
            samples = scrape(metrics)

    for kind in ("ADDED", "MODIFIED", "DELETED"):
        assert value(samples, "poddns_kubernetes_events_total", type=kind) == 1, kind
    assert value(samples, "poddns_kubernetes_events_total", type="ERROR") == 1
    assert abs(value(samples, "poddns_kubernetes_last_event_timestamp_seconds") - time.time()) < 30
    applied = value(samples, "poddns_programming_duration_seconds_count")
    assert 1 <= applied <= 3
    # Fresh timestamps: each within a few seconds (1-second resolution, so never exact).
    assert value(samples, "poddns_programming_duration_seconds_bucket", le="5.0") == applied
    assert value(samples, "poddns_kubernetes_synced") == 1


def test_debug_identities_lists_every_ptr_with_its_reason_sorted_and_looks_up_one_ip_or_name():
    with ServerProcess(*DEMO) as server:
        described = json.loads(get_identities(server.metrics_port)[2])
        ptrs = {entry["ip"]: entry for entry in described["ptrs"]}
        assert ptrs["10.244.1.10"] == {"ip": "10.244.1.10", "name": f"{KAFKA0}.", "reason": "identity", "pod": "default/kafka-0"}
        assert ptrs["10.244.0.4"]["reason"] == "static" and ptrs["10.244.0.4"]["name"] == "legacy-nas.corp.example.com."
        assert ptrs["10.244.2.50"]["reason"] == "fallback" and ptrs["10.244.2.50"]["name"].endswith(".pod.cluster.local.")
        assert "10.244.1.99" not in ptrs  # the terminating kdc-1 duplicate lost its name, so its IP has no PTR
        addresses = [ipaddress.ip_address(entry["ip"]) for entry in described["ptrs"]]
        assert addresses == sorted(addresses, key=lambda a: (a.version, a))
        names = [entry["name"] for entry in described["identities"]]
        assert names == sorted(names)

        # Lookups: who owns this IP, who claims this name (not rate-limited: ask twice at once).
        for _ in range(2):
            status, _, body = http_get(server.metrics_port, "/debug/identities?ip=10.244.1.99")
            assert status == 200
        owned = json.loads(body)
        assert owned["ptr"] is None
        (claimant,) = owned["claimants"]
        assert claimant["pod"] == "security/kdc-1-7f8a9b6c5-h4j8n" and not claimant["owns_name"] and claimant["terminating"]
        status, _, body = http_get(server.metrics_port, f"/debug/identities?name=kdc-1.kdc.security.{ZONE}")
        named = json.loads(body)
        assert named["owner"]["pod"] == "security/kdc-1-6d9f7c5b8-x2x7q"
        assert [c["owns_name"] for c in named["claimants"]] == [True, False]
        assert len(named["conflicts"]) == 1
        assert json.loads(http_get(server.metrics_port, "/debug/identities?ip=not-an-ip")[2])["error"]
