"""Table-driven answers: question in, expected answer out, as zone-file text.

The view is built through the registry from pods and static entries, so each
row checks the whole chain from Kubernetes object to reply bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

from server.model import StaticEntry
from server.sources.pods import strip_pod
from tests.helpers import ZONE, answer_text, ask, authority_text, build, pod, rcode, sts_pod

PODS = [
    sts_pod("kafka", 0, "10.244.1.10"),
    sts_pod("kafka", 1, "10.244.2.11"),
    sts_pod("kafka", 2, "10.244.3.12"),
    sts_pod("app", 0, ["10.244.1.40", "fd00:10:244:1::40"]),
    pod("web-5d8f-z8v4t", "10.244.2.50"),  # no hostname: fallback PTR only
    pod("solo", "10.244.2.51", hostname="solo"),  # hostname without subdomain: fallback too
    pod("v6only", "fd00:10:244:2::51"),
    pod("exporter", "10.244.9.9", "exporter", "metrics", host_network=True),
    pod("migrate-1", "10.244.3.60", "migrate", "jobs", phase="Succeeded"),
    pod("kdc-1-new", "10.244.2.30", "kdc-1", "kdc", "security", created="2026-11-02T08:00:00Z"),
]
STATIC = [
    StaticEntry("10.244.0.2", ("gateway.pods.example.internal",), 1),
    StaticEntry("10.244.0.3", ("ldap.pods.example.internal", "ldap-primary.pods.example.internal"), 2),
    StaticEntry("fd00:10:244::3", ("ldap.pods.example.internal",), 3),
    StaticEntry("10.244.0.4", ("legacy.corp.example.com",), 4),
]
SOA = f"{ZONE}. 5 IN SOA ns.{ZONE}. hostmaster.{ZONE}. SERIAL 3600 600 86400 5"
SOA_V4 = f"244.10.in-addr.arpa. 5 IN SOA ns.{ZONE}. hostmaster.{ZONE}. SERIAL 3600 600 86400 5"
SOA_V6 = f"4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa. 5 IN SOA ns.{ZONE}. hostmaster.{ZONE}. SERIAL 3600 600 86400 5"
V6_PTR = "0.4.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa."


@dataclass
class Case:
    qname: str
    qtype: str
    rcode: str
    answer: list[str] = field(default_factory=list)
    ns: list[str] = field(default_factory=list)
    aa: bool = True


CASES = [
    # Identities and the set name.
    Case(f"kafka-0.kafka.default.{ZONE}", "A", "NOERROR", [f"kafka-0.kafka.default.{ZONE}. 30 IN A 10.244.1.10"]),
    Case(f"kafka.default.{ZONE}", "A", "NOERROR", [f"kafka.default.{ZONE}. 30 IN A 10.244.{i + 1}.{10 + i}" for i in range(3)]),
    Case(f"app-0.app.default.{ZONE}", "AAAA", "NOERROR", [f"app-0.app.default.{ZONE}. 30 IN AAAA fd00:10:244:1::40"]),
    Case(f"app-0.app.default.{ZONE}", "A", "NOERROR", [f"app-0.app.default.{ZONE}. 30 IN A 10.244.1.40"]),
    Case(f"kdc-1.kdc.security.{ZONE}", "A", "NOERROR", [f"kdc-1.kdc.security.{ZONE}. 30 IN A 10.244.2.30"]),
    # Reverse: exactly one PTR per IP.
    Case("10.1.244.10.in-addr.arpa", "PTR", "NOERROR", [f"10.1.244.10.in-addr.arpa. 30 IN PTR kafka-0.kafka.default.{ZONE}."]),
    Case(V6_PTR, "PTR", "NOERROR", [f"{V6_PTR} 30 IN PTR app-0.app.default.{ZONE}."]),
    Case("40.1.244.10.in-addr.arpa", "PTR", "NOERROR", [f"40.1.244.10.in-addr.arpa. 30 IN PTR app-0.app.default.{ZONE}."]),
    Case("50.2.244.10.in-addr.arpa", "PTR", "NOERROR", ["50.2.244.10.in-addr.arpa. 30 IN PTR 10-244-2-50.default.pod.cluster.local."]),
    Case("51.2.244.10.in-addr.arpa", "PTR", "NOERROR", ["51.2.244.10.in-addr.arpa. 30 IN PTR 10-244-2-51.default.pod.cluster.local."]),
    Case(
        "1.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa",
        "PTR",
        "NOERROR",
        [
            "1.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa. 30 IN PTR fd00-10-244-2--51.default.pod.cluster.local."
        ],
    ),
    # hostNetwork and finished pods get nothing.
    Case(f"exporter.metrics.default.{ZONE}", "A", "NXDOMAIN", ns=[SOA]),
    Case("9.9.244.10.in-addr.arpa", "PTR", "NXDOMAIN", ns=[SOA_V4]),
    Case(f"migrate.jobs.default.{ZONE}", "A", "NXDOMAIN", ns=[SOA]),
    Case("60.3.244.10.in-addr.arpa", "PTR", "NXDOMAIN", ns=[SOA_V4]),
    # Static entries: every name answers, PTR to the first name, out-of-zone names only reverse.
    Case(f"gateway.{ZONE}", "A", "NOERROR", [f"gateway.{ZONE}. 30 IN A 10.244.0.2"]),
    Case(f"ldap-primary.{ZONE}", "A", "NOERROR", [f"ldap-primary.{ZONE}. 30 IN A 10.244.0.3"]),
    Case(f"ldap.{ZONE}", "AAAA", "NOERROR", [f"ldap.{ZONE}. 30 IN AAAA fd00:10:244::3"]),
    Case("3.0.244.10.in-addr.arpa", "PTR", "NOERROR", [f"3.0.244.10.in-addr.arpa. 30 IN PTR ldap.{ZONE}."]),
    Case("4.0.244.10.in-addr.arpa", "PTR", "NOERROR", ["4.0.244.10.in-addr.arpa. 30 IN PTR legacy.corp.example.com."]),
    Case("legacy.corp.example.com", "A", "REFUSED", aa=False),
    # ANY: the whole set of the name.
    Case(f"ldap.{ZONE}", "ANY", "NOERROR", [f"ldap.{ZONE}. 30 IN A 10.244.0.3", f"ldap.{ZONE}. 30 IN AAAA fd00:10:244::3"]),
    Case("10.1.244.10.in-addr.arpa", "ANY", "NOERROR", [f"10.1.244.10.in-addr.arpa. 30 IN PTR kafka-0.kafka.default.{ZONE}."]),
    # Apex: SOA (its TTL is the negative TTL) and NS.
    Case(ZONE, "SOA", "NOERROR", [SOA]),
    Case(ZONE, "NS", "NOERROR", [f"{ZONE}. 30 IN NS ns.{ZONE}."]),
    Case(ZONE, "A", "NOERROR", ns=[SOA]),
    Case("244.10.in-addr.arpa", "SOA", "NOERROR", [SOA_V4]),
    Case("4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa", "NS", "NOERROR", [f"4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa. 30 IN NS ns.{ZONE}."]),
    # NODATA: other types, unknown types, empty non-terminals.
    Case(f"kafka-0.kafka.default.{ZONE}", "AAAA", "NOERROR", ns=[SOA]),
    Case(f"kafka-0.kafka.default.{ZONE}", "MX", "NOERROR", ns=[SOA]),
    Case(f"kafka-0.kafka.default.{ZONE}", "TYPE65280", "NOERROR", ns=[SOA]),
    Case(f"default.{ZONE}", "A", "NOERROR", ns=[SOA]),
    Case(f"security.{ZONE}", "A", "NOERROR", ns=[SOA]),
    Case("1.244.10.in-addr.arpa", "PTR", "NOERROR", ns=[SOA_V4]),
    # NXDOMAIN inside the zones.
    Case(f"kafka-3.kafka.default.{ZONE}", "A", "NXDOMAIN", ns=[SOA]),
    Case(f"nope.{ZONE}", "AAAA", "NXDOMAIN", ns=[SOA]),
    Case(f"x.kafka-0.kafka.default.{ZONE}", "A", "NXDOMAIN", ns=[SOA]),
    Case("99.1.244.10.in-addr.arpa", "PTR", "NXDOMAIN", ns=[SOA_V4]),
    Case("7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.4.4.2.0.0.1.0.0.0.0.d.f.ip6.arpa", "PTR", "NXDOMAIN", ns=[SOA_V6]),
    Case("9.9.9.9.244.10.in-addr.arpa", "PTR", "NXDOMAIN", ns=[SOA_V4]),
    # REFUSED outside every zone, and for zone transfers.
    Case("example.com", "A", "REFUSED", aa=False),
    Case("1.0.0.10.in-addr.arpa", "PTR", "REFUSED", aa=False),
    Case("10.in-addr.arpa", "SOA", "REFUSED", aa=False),
    Case("internal", "A", "REFUSED", aa=False),
    Case(ZONE, "AXFR", "REFUSED", aa=False),
]


def _normal(lines: list[str]) -> list[str]:
    return [re.sub(r"(hostmaster\.\S+ )\d+", r"\1SERIAL", line) for line in lines]


@pytest.fixture(scope="module")
def view():
    view, _ = build(PODS, STATIC, fallback_ptr=True)
    return view


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.qtype}-{c.qname}")
def test_answer_table(view, case: Case):
    reply = ask(view, case.qname, case.qtype)
    assert rcode(reply) == case.rcode
    assert _normal(answer_text(reply)) == sorted(case.answer)
    assert _normal(authority_text(reply)) == sorted(case.ns)
    assert bool(reply.flags & 0x0400) == case.aa  # AA
    assert not reply.flags & 0x0080  # RA is never set
    assert reply.flags & 0x8000  # QR


def test_serial_grows_only_when_content_changes():
    view, registry = build(PODS)
    sink = registry.sink("test")
    zone = view.zones[b"\x04pods\x07example\x08internal\x00"]
    first = zone.serial
    sink.upsert(strip_pod(sts_pod("kafka", 0, "10.244.1.10")))
    assert zone.serial == first, "an unchanged pod must not move the serial"
    sink.upsert(strip_pod(sts_pod("kafka", 7, "10.244.1.77")))
    second = zone.serial
    assert second > first
    reverse = view.zones[b"\x03244\x0210\x07in-addr\x04arpa\x00"]
    assert reverse.serial > first
    assert str(second) in _soa_text(view)


def _soa_text(view) -> str:
    return answer_text(ask(view, ZONE, "SOA"))[0]


def test_custom_template_and_no_set_name():
    view, _ = build([pod("db-xyz", "10.244.5.5", "db", "pg", "prod")], name_template="{pod}-{namespace}")
    assert answer_text(ask(view, f"db-xyz-prod.{ZONE}", "A")) == [f"db-xyz-prod.{ZONE}. 30 IN A 10.244.5.5"]
    assert answer_text(ask(view, "5.5.244.10.in-addr.arpa", "PTR")) == [f"5.5.244.10.in-addr.arpa. 30 IN PTR db-xyz-prod.{ZONE}."]


def test_publish_ready_hides_pods_until_ready():
    pods = [sts_pod("kafka", 0, "10.244.1.10", ready=False), sts_pod("kafka", 1, "10.244.1.11")]
    view, _ = build(pods, publish_not_ready=False)
    assert rcode(ask(view, f"kafka-0.kafka.default.{ZONE}")) == "NXDOMAIN"
    assert rcode(ask(view, f"kafka-1.kafka.default.{ZONE}")) == "NOERROR"
    view, _ = build(pods)
    assert rcode(ask(view, f"kafka-0.kafka.default.{ZONE}")) == "NOERROR"


def test_not_synced_is_servfail_inside_and_refused_outside():
    view, registry = build(PODS)
    registry.sink("kubernetes")  # a second source that has not listed yet
    assert rcode(ask(view, f"kafka-0.kafka.default.{ZONE}")) == "SERVFAIL"
    assert rcode(ask(view, f"nope.{ZONE}")) == "SERVFAIL"
    assert rcode(ask(view, "10.1.244.10.in-addr.arpa", "PTR")) == "SERVFAIL"
    assert rcode(ask(view, "example.com")) == "REFUSED"
    registry.set_synced("kubernetes", True)
    assert rcode(ask(view, f"kafka-0.kafka.default.{ZONE}")) == "NOERROR"


def test_cidr_not_on_an_octet_boundary_splits_into_zones():
    view, _ = build([pod("a", "10.100.1.1", "a", "s")], cidrs=("10.96.0.0/12",))
    assert rcode(ask(view, "1.1.100.10.in-addr.arpa", "PTR")) == "NOERROR"
    assert rcode(ask(view, "1.1.111.10.in-addr.arpa", "PTR")) == "NXDOMAIN"
    assert rcode(ask(view, "1.1.112.10.in-addr.arpa", "PTR")) == "REFUSED"
    assert rcode(ask(view, "1.1.95.10.in-addr.arpa", "PTR")) == "REFUSED"
    assert answer_text(ask(view, "100.10.in-addr.arpa", "SOA"))[0].startswith("100.10.in-addr.arpa. 5 IN SOA")


def test_pod_ip_outside_reverse_cidrs_has_forward_but_no_ptr():
    view, _ = build([pod("a", "192.168.7.7", "a", "s")])
    assert answer_text(ask(view, f"a.s.default.{ZONE}")) == [f"a.s.default.{ZONE}. 30 IN A 192.168.7.7"]
    assert rcode(ask(view, "7.7.168.192.in-addr.arpa", "PTR")) == "REFUSED"
