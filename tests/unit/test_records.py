"""The records beyond A and PTR, as a table: SRV per named port, hostnameOverride names, the records file.

Question in, expected answer (and authority, and additional) out, as zone-file text, through the answer path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest

from server.model import StaticEntry
from server.sources.pods import strip_pod
from server.sources.recordsfile import parse_records_text
from tests.helpers import ZONE, additional_text, answer_text, ask, authority_text, build, pod, rcode, sts_pod

SOA = f"{ZONE}. 5 IN SOA ns.{ZONE}. hostmaster.{ZONE}. SERIAL 3600 600 86400 5"
K0, K1, K2 = (f"kafka-{i}.kafka.default.{ZONE}" for i in range(3))
PODS = [
    sts_pod("kafka", 0, "10.244.1.10", ports=[("kafka", 9092), ("jmx", 7071)]),
    sts_pod("kafka", 1, ["10.244.1.11", "fd00:10:244:1::11"], ports=[("kafka", 9092), ("gossip", 7946, "UDP")]),
    sts_pod("kafka", 2, "10.244.1.12"),  # declares no named port
    pod("kdc-a", "10.244.2.5", "kdc-a", "kdc", "security", hostname_override=f"kdc.{ZONE}"),
    pod("far", "10.244.2.6", "far", "away", hostname_override="far.corp.example.com"),  # outside: the template name
    pod("web-0", "10.244.3.1", "web-0", "web", ports=[("Not_A_Name", 80)]),  # not an IANA service name: no SRV
]
STATIC = [StaticEntry("10.244.0.9", (f"gw.{ZONE}",), 1)]
RECORDS = f"""$TTL 60
_kerberos._udp      SRV 0 0 88 kdc
_kerberos           TXT "PODS.EXAMPLE.INTERNAL"
bootstrap           CNAME kafka.default
bootstrap-0         CNAME {K0}.
chain               CNAME bootstrap-0
dangling            CNAME nothing-here
outward             CNAME www.example.com.
nodata              CNAME gw
@                   MX 10 mail.corp.example.com.
@                   CAA 0 issue "letsencrypt.org"
printer             A 10.244.0.20
20.0.244.10.in-addr.arpa. PTR printer
kafka-0.kafka.default TXT "a pod owns this name"
gw                  CNAME elsewhere
$ORIGIN example.org.
stray               A 192.0.2.1
"""


@dataclass
class Case:
    qname: str
    qtype: str
    rcode: str
    answer: list[str] = field(default_factory=list)
    ns: list[str] = field(default_factory=list)
    additional: list[str] = field(default_factory=list)


CASES = [
    # SRV per named port: the set's (every member declaring it, equal weights) and each member's own.
    Case(
        f"_kafka._tcp.kafka.default.{ZONE}",
        "SRV",
        "NOERROR",
        [f"_kafka._tcp.kafka.default.{ZONE}. 30 IN SRV 0 1 9092 {K0}.", f"_kafka._tcp.kafka.default.{ZONE}. 30 IN SRV 0 1 9092 {K1}."],
        additional=[f"{K0}. 30 IN A 10.244.1.10", f"{K1}. 30 IN A 10.244.1.11", f"{K1}. 30 IN AAAA fd00:10:244:1::11"],
    ),
    Case(
        f"_kafka._tcp.{K1}",
        "SRV",
        "NOERROR",
        [f"_kafka._tcp.{K1}. 30 IN SRV 0 1 9092 {K1}."],
        additional=[f"{K1}. 30 IN A 10.244.1.11", f"{K1}. 30 IN AAAA fd00:10:244:1::11"],
    ),
    Case(
        f"_jmx._tcp.kafka.default.{ZONE}",
        "SRV",
        "NOERROR",
        [f"_jmx._tcp.kafka.default.{ZONE}. 30 IN SRV 0 1 7071 {K0}."],
        additional=[f"{K0}. 30 IN A 10.244.1.10"],
    ),
    Case(
        f"_gossip._udp.{K1}",
        "SRV",
        "NOERROR",
        [f"_gossip._udp.{K1}. 30 IN SRV 0 1 7946 {K1}."],
        additional=[f"{K1}. 30 IN A 10.244.1.11", f"{K1}. 30 IN AAAA fd00:10:244:1::11"],
    ),
    Case(f"_kafka._tcp.{K2}", "SRV", "NXDOMAIN", ns=[SOA]),
    Case(f"_tcp.{K0}", "SRV", "NOERROR", ns=[SOA]),  # an empty non-terminal
    Case(f"{K0}", "A", "NOERROR", [f"{K0}. 30 IN A 10.244.1.10"]),  # the identity keeps its own answer
    Case(f"_not_a_name._tcp.web-0.web.default.{ZONE}", "SRV", "NXDOMAIN", ns=[SOA]),
    # hostnameOverride: that name is the identity, with the one PTR; the set still lists the pod.
    Case(f"kdc.{ZONE}", "A", "NOERROR", [f"kdc.{ZONE}. 30 IN A 10.244.2.5"]),
    Case("5.2.244.10.in-addr.arpa", "PTR", "NOERROR", [f"5.2.244.10.in-addr.arpa. 30 IN PTR kdc.{ZONE}."]),
    Case(f"kdc-a.kdc.security.{ZONE}", "A", "NXDOMAIN", ns=[SOA]),
    Case(f"kdc.security.{ZONE}", "A", "NOERROR", [f"kdc.security.{ZONE}. 30 IN A 10.244.2.5"]),
    Case(f"far.away.default.{ZONE}", "A", "NOERROR", [f"far.away.default.{ZONE}. 30 IN A 10.244.2.6"]),
    # The records file: any type as written, with its own TTL.
    Case(f"_kerberos._udp.{ZONE}", "SRV", "NOERROR", [f"_kerberos._udp.{ZONE}. 60 IN SRV 0 0 88 kdc.{ZONE}."]),
    Case(f"_kerberos.{ZONE}", "TXT", "NOERROR", [f'_kerberos.{ZONE}. 60 IN TXT "PODS.EXAMPLE.INTERNAL"']),
    Case(ZONE, "MX", "NOERROR", [f"{ZONE}. 60 IN MX 10 mail.corp.example.com."]),
    Case(ZONE, "CAA", "NOERROR", [f'{ZONE}. 60 IN CAA 0 issue "letsencrypt.org"']),
    # CNAME: chased through in-zone targets into the answer; NXDOMAIN or NODATA where the chain ends.
    Case(
        f"bootstrap.{ZONE}",
        "A",
        "NOERROR",
        [f"bootstrap.{ZONE}. 60 IN CNAME kafka.default.{ZONE}."] + [f"kafka.default.{ZONE}. 30 IN A 10.244.1.1{i}" for i in range(3)],
    ),
    Case(f"bootstrap.{ZONE}", "CNAME", "NOERROR", [f"bootstrap.{ZONE}. 60 IN CNAME kafka.default.{ZONE}."]),
    Case(
        f"chain.{ZONE}",
        "AAAA",
        "NOERROR",
        [f"chain.{ZONE}. 60 IN CNAME bootstrap-0.{ZONE}.", f"bootstrap-0.{ZONE}. 60 IN CNAME {K0}."],
        ns=[SOA],
    ),
    Case(
        f"chain.{ZONE}",
        "A",
        "NOERROR",
        [f"chain.{ZONE}. 60 IN CNAME bootstrap-0.{ZONE}.", f"bootstrap-0.{ZONE}. 60 IN CNAME {K0}.", f"{K0}. 30 IN A 10.244.1.10"],
    ),
    Case(f"dangling.{ZONE}", "A", "NXDOMAIN", [f"dangling.{ZONE}. 60 IN CNAME nothing-here.{ZONE}."], ns=[SOA]),
    Case(f"outward.{ZONE}", "A", "NOERROR", [f"outward.{ZONE}. 60 IN CNAME www.example.com."]),
    Case(f"nodata.{ZONE}", "TXT", "NOERROR", [f"nodata.{ZONE}. 60 IN CNAME gw.{ZONE}."], ns=[SOA]),
    # A and PTR of the records file act as a hosts line: forward-confirmed.
    Case(f"printer.{ZONE}", "A", "NOERROR", [f"printer.{ZONE}. 30 IN A 10.244.0.20"]),
    Case("20.0.244.10.in-addr.arpa", "PTR", "NOERROR", [f"20.0.244.10.in-addr.arpa. 30 IN PTR printer.{ZONE}."]),
    # A name a pod owns stays the pod's; a CNAME beside a hosts entry's address is not served.
    Case(K0, "TXT", "NOERROR", ns=[SOA]),
    Case(f"gw.{ZONE}", "A", "NOERROR", [f"gw.{ZONE}. 30 IN A 10.244.0.9"]),
    Case(f"gw.{ZONE}", "CNAME", "NOERROR", ns=[SOA]),
    Case("stray.example.org", "A", "REFUSED"),
]


@pytest.fixture(scope="module")
def store():
    store, registry = build(PODS, STATIC)
    registry.replace_records(parse_records_text("records", RECORDS, ZONE, 30))
    return store


def _normal(lines: list[str]) -> list[str]:
    return [line.replace(line.split()[6], "SERIAL") if " SOA " in line else line for line in lines]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.qtype}-{c.qname}")
def test_records_table(store, case: Case):
    reply = ask(store, case.qname, case.qtype)
    assert rcode(reply) == case.rcode
    assert answer_text(reply) == sorted(case.answer)
    assert _normal(authority_text(reply)) == sorted(case.ns)
    assert additional_text(reply) == sorted(case.additional)


def test_srv_follows_the_pods():
    store, registry = build(PODS[:2])
    sink = registry.sink("test")
    srv = f"_kafka._tcp.kafka.default.{ZONE}"
    assert len(answer_text(ask(store, srv, "SRV"))) == 2
    sink.upsert(strip_pod(sts_pod("kafka", 1, "10.244.1.11")))  # the port is gone from kafka-1
    assert answer_text(ask(store, srv, "SRV")) == [f"{srv}. 30 IN SRV 0 1 9092 {K0}."]
    assert rcode(ask(store, f"_kafka._tcp.{K1}", "SRV")) == "NXDOMAIN"
    sink.delete("uid-default-kafka-0")
    assert rcode(ask(store, srv, "SRV")) == "NXDOMAIN"
    assert registry.stats()["srv"] == 0


def test_a_big_set_keeps_its_srv_answer_and_drops_additional_records_that_do_not_fit():
    pods = [sts_pod("big", i, f"10.244.7.{i + 1}", ports=[("p", 80)]) for i in range(17)]
    store, _ = build(pods)
    udp = ask(store, f"_p._tcp.big.default.{ZONE}", "SRV", use_edns=0, payload=1232)
    assert not udp.flags & 0x0200 and len(udp.answer[0]) == 17  # the answer whole, not truncated
    assert 0 < len(additional_text(udp)) < 17  # the targets' addresses as far as they fit
    tcp = ask(store, f"_p._tcp.big.default.{ZONE}", "SRV", tcp=True)
    assert len(additional_text(tcp)) == 17


def test_an_override_claimed_twice_goes_to_the_older_pod(caplog):
    caplog.set_level(logging.WARNING, "pod_identity_dns.registry")
    older = pod("a", "10.244.4.1", "a", "s", created="2026-10-01T00:00:00Z", hostname_override=f"db.{ZONE}")
    younger = pod("b", "10.244.4.2", "b", "s", created="2026-11-01T00:00:00Z", hostname_override=f"db.{ZONE}")
    store, registry = build([younger, older])
    assert answer_text(ask(store, f"db.{ZONE}")) == [f"db.{ZONE}. 30 IN A 10.244.4.1"]
    assert rcode(ask(store, "2.4.244.10.in-addr.arpa", "PTR")) == "NXDOMAIN"
    assert any("conflict on name db." in r.getMessage() for r in caplog.records)
    registry.sink("test").delete("uid-default-a")
    assert answer_text(ask(store, f"db.{ZONE}")) == [f"db.{ZONE}. 30 IN A 10.244.4.2"]
    assert answer_text(ask(store, f"s.default.{ZONE}")) == [f"s.default.{ZONE}. 30 IN A 10.244.4.2"]


def test_a_records_file_reload_applies_the_difference_and_a_pod_can_take_a_record_name():
    store, registry = build([])
    registry.replace_records(parse_records_text("r", "x TXT one\ny CNAME x\n", ZONE, 30))
    assert answer_text(ask(store, f"x.{ZONE}", "TXT")) == [f'x.{ZONE}. 30 IN TXT "one"']
    registry.replace_records(parse_records_text("r", "x TXT two\n", ZONE, 30))
    assert answer_text(ask(store, f"x.{ZONE}", "TXT")) == [f'x.{ZONE}. 30 IN TXT "two"']
    assert rcode(ask(store, f"y.{ZONE}", "A")) == "NXDOMAIN"
    registry.replace_records(parse_records_text("r", "x.s.default TXT mine\n", ZONE, 30))
    registry.sink("test").upsert(strip_pod(pod("x", "10.244.5.5", "x", "s")))  # a pod claims the name: it is the pod's
    assert rcode(ask(store, f"x.s.default.{ZONE}", "TXT")) == "NOERROR" and not ask(store, f"x.s.default.{ZONE}", "TXT").answer
    registry.sink("test").delete("uid-default-x")
    assert answer_text(ask(store, f"x.s.default.{ZONE}", "TXT")) == [f'x.s.default.{ZONE}. 30 IN TXT "mine"']
    assert registry.stats()["static_records"] == 1


def test_debug_listing_says_where_each_record_came_from():
    from server.registry.describe import describe

    _, registry = build(PODS, STATIC)
    registry.replace_records(parse_records_text("records", RECORDS, ZONE, 30))
    records = {(entry["name"], entry["type"]): entry["source"] for entry in describe(registry)["records"]}
    assert records[(f"_kafka._tcp.{K0}.", "SRV")] == "named ports of pod default/kafka-0"
    assert records[(f"_kafka._tcp.kafka.default.{ZONE}.", "SRV")] == "named ports of the set's pods"
    assert records[(f"_kerberos.{ZONE}.", "TXT")] == "records file line 3"
    assert records[(f"{K0}.", "-")].startswith("records file, not served")


def test_two_cnames_at_one_name_serve_the_first_and_the_second_is_logged(caplog):
    caplog.set_level(logging.WARNING, "pod_identity_dns.registry")
    store, registry = build([])
    registry.replace_records(parse_records_text("r", "x CNAME one\nx CNAME two\none TXT a\n", ZONE, 30))
    reply = ask(store, f"x.{ZONE}", "TXT")  # one CNAME, chased: a second would make a malformed answer
    assert answer_text(reply) == [f'one.{ZONE}. 30 IN TXT "a"', f"x.{ZONE}. 30 IN CNAME one.{ZONE}."]
    assert any(f"line 2: a second CNAME at x.{ZONE} (the first is on line 1): ignored" in r.getMessage() for r in caplog.records)


def test_a_cname_target_written_in_capitals_is_chased():
    store, registry = build(PODS[:1])
    registry.replace_records(parse_records_text("r", "upper CNAME Kafka-0.KAFKA.default\n", ZONE, 30))
    target = f"Kafka-0.KAFKA.default.{ZONE}."  # served as written; looked up whatever its case
    assert answer_text(ask(store, f"upper.{ZONE}", "A")) == [f"{K0}. 30 IN A 10.244.1.10", f"upper.{ZONE}. 30 IN CNAME {target}"]


def test_srv_follows_the_publish_policy_and_sctp_ports_get_their_own_label():
    unready = sts_pod("kafka", 1, "10.244.1.11", ready=False, ports=[("kafka", 9092)])
    sctp = sts_pod("kafka", 2, "10.244.1.12", ports=[("sig", 3868, "SCTP")])
    store, _ = build([PODS[0], unready, sctp], publish_not_ready=False)
    assert answer_text(ask(store, f"_kafka._tcp.kafka.default.{ZONE}", "SRV")) == [
        f"_kafka._tcp.kafka.default.{ZONE}. 30 IN SRV 0 1 9092 {K0}."
    ]  # the member that is not ready is not published, nor is its SRV
    assert rcode(ask(store, f"_kafka._tcp.{K1}", "SRV")) == "NXDOMAIN"
    assert answer_text(ask(store, f"_sig._sctp.{K2}", "SRV")) == [f"_sig._sctp.{K2}. 30 IN SRV 0 1 3868 {K2}."]


def test_an_override_outside_every_zone_is_logged_once(caplog):
    caplog.set_level(logging.WARNING)
    far = pod("far", "10.244.2.6", "far", "away", hostname_override="far.corp.example.com")
    store, registry = build([far])
    registry.sink("test").upsert(strip_pod(pod("far", "10.244.2.7", "far", "away", hostname_override="far.corp.example.com")))
    logged = [r.getMessage() for r in caplog.records if "hostnameOverride" in r.getMessage()]
    assert len(logged) == 1 and "outside every --zone" in logged[0]
    assert answer_text(ask(store, f"far.away.default.{ZONE}")) == [f"far.away.default.{ZONE}. 30 IN A 10.244.2.7"]


def test_records_the_file_cannot_serve_are_logged_with_their_line(caplog):
    caplog.set_level(logging.WARNING, "pod_identity_dns.registry")
    _, registry = build(PODS[:1], STATIC)
    text = f"$TTL 60\ngw CNAME elsewhere\n{K0}. TXT mine\n$ORIGIN example.org.\nstray A 192.0.2.1\n"
    registry.replace_records(parse_records_text("r", text, ZONE, 30))
    logged = " | ".join(r.getMessage() for r in caplog.records)
    assert "line 5: stray.example.org is outside every served zone: ignored" in logged
    assert f"the CNAME at gw.{ZONE}. stands beside a hosts entry's addresses: not served" in logged
    assert f"gw.{ZONE}. belongs to" not in logged  # one line, the right reason
    assert f"conflict on name {K0}.: pod default/kafka-0" in logged and "static entry (hosts or records file) loses it" in logged


def test_debug_listing_names_the_file_of_static_addresses_and_ptrs():
    from server.registry.describe import describe

    _, registry = build(PODS, STATIC)
    registry.replace_records(parse_records_text("records", RECORDS, ZONE, 30))
    listing = describe(registry)
    static = {entry["name"]: entry["source"] for entry in listing["static"]}
    assert static[f"gw.{ZONE}."] == "hosts-file" and static[f"printer.{ZONE}."] == "records-file"
    ptrs = {entry["ip"]: entry for entry in listing["ptrs"]}
    assert ptrs["10.244.0.9"]["source"] == "hosts-file" and ptrs["10.244.0.20"]["source"] == "records-file"
    assert (f"{ZONE}.", "CAA") in {(entry["name"], entry["type"]) for entry in listing["records"]}
