"""Ownership: one owner per name and per IP, chosen deterministically, conflicts logged once."""

from __future__ import annotations

import logging

from hypothesis import given, settings
from hypothesis import strategies as st

from server.model import StaticEntry
from server.sources.pods import strip_pod
from server.zone.names import reverse_name, to_text, to_wire
from tests.helpers import ZONE, answer_text, ask, build, pod, rcode

NAME = f"kdc-1.kdc.security.{ZONE}"


def ptrs(view, reverse: str) -> list[str]:
    return answer_text(ask(view, reverse, "PTR"))


def kdc(name: str, ip: str, created: str, deleting: str | None = None, uid: str | None = None) -> dict:
    return pod(name, ip, "kdc-1", "kdc", "security", created=created, deleting=deleting, uid=uid)


def test_duplicate_name_oldest_wins_and_loser_has_no_ptr(caplog):
    caplog.set_level(logging.WARNING, "pod_identity_dns.registry")
    view, registry = build(
        [kdc("kdc-1-new", "10.244.2.30", "2026-11-02T08:00:00Z"), kdc("kdc-1-old", "10.244.1.99", "2026-10-01T08:00:00Z")]
    )
    assert answer_text(ask(view, NAME)) == [f"{NAME}. 30 IN A 10.244.1.99"]
    assert ptrs(view, "99.1.244.10.in-addr.arpa") == [f"99.1.244.10.in-addr.arpa. 30 IN PTR {NAME}."]
    assert rcode(ask(view, "30.2.244.10.in-addr.arpa", "PTR")) == "NXDOMAIN"
    conflicts = [r.getMessage() for r in caplog.records if "conflict" in r.getMessage()]
    assert len(conflicts) == 1
    assert "security/kdc-1-old" in conflicts[0] and "security/kdc-1-new" in conflicts[0]
    assert registry.stats()["conflicts"] == 1

    # The same state again logs nothing new; the conflict ends when the winner goes.
    registry.sink("test").upsert(strip_pod(kdc("kdc-1-new", "10.244.2.30", "2026-11-02T08:00:00Z")))
    assert len([r for r in caplog.records if "conflict" in r.getMessage()]) == 1
    registry.sink("test").delete("uid-security-kdc-1-old")
    assert answer_text(ask(view, NAME)) == [f"{NAME}. 30 IN A 10.244.2.30"]
    assert ptrs(view, "30.2.244.10.in-addr.arpa") == [f"30.2.244.10.in-addr.arpa. 30 IN PTR {NAME}."]
    assert rcode(ask(view, "99.1.244.10.in-addr.arpa", "PTR")) == "NXDOMAIN"
    assert registry.stats()["conflicts"] == 0


def test_terminating_pod_loses_to_a_newer_running_one():
    view, _ = build(
        [
            kdc("kdc-1-old", "10.244.1.99", "2026-10-01T08:00:00Z", deleting="2026-11-02T08:00:30Z"),
            kdc("kdc-1-new", "10.244.2.30", "2026-11-02T08:00:00Z"),
        ]
    )
    assert answer_text(ask(view, NAME)) == [f"{NAME}. 30 IN A 10.244.2.30"]
    assert rcode(ask(view, "99.1.244.10.in-addr.arpa", "PTR")) == "NXDOMAIN"


def test_terminating_pod_keeps_its_name_while_alone():
    view, _ = build([kdc("kdc-1-old", "10.244.1.99", "2026-10-01T08:00:00Z", deleting="2026-11-02T08:00:30Z")])
    assert answer_text(ask(view, NAME)) == [f"{NAME}. 30 IN A 10.244.1.99"]


def test_same_creation_time_falls_back_to_uid():
    same = "2026-11-02T08:00:00Z"
    view, _ = build([kdc("b", "10.244.2.2", same, uid="uid-b"), kdc("a", "10.244.2.1", same, uid="uid-a")])
    assert answer_text(ask(view, NAME)) == [f"{NAME}. 30 IN A 10.244.2.1"]


def test_ip_reuse_added_before_deleted_keeps_exactly_one_ptr():
    old = pod("old-0", "10.244.3.3", "old-0", "svc", created="2026-10-01T00:00:00Z")
    new = pod("new-0", "10.244.3.3", "new-0", "svc", created="2026-11-01T00:00:00Z")
    view, registry = build([old])
    sink = registry.sink("test")
    reverse = "3.3.244.10.in-addr.arpa"
    sink.upsert(strip_pod(new))  # ADDED of the new pod arrives first
    assert ptrs(view, reverse) == [f"{reverse}. 30 IN PTR old-0.svc.default.{ZONE}."]
    assert registry.stats()["conflicts"] == 1
    sink.delete("uid-default-old-0")  # then DELETED of the old one
    assert ptrs(view, reverse) == [f"{reverse}. 30 IN PTR new-0.svc.default.{ZONE}."]
    assert rcode(ask(view, f"old-0.svc.default.{ZONE}")) == "NXDOMAIN"
    assert registry.stats()["conflicts"] == 0


def test_pod_identity_beats_static_entry_for_ip_and_name():
    static = [
        StaticEntry("10.244.4.4", ("legacy.pods.example.internal",), 1),
        StaticEntry("10.244.9.1", (f"a.s.default.{ZONE}",), 2),
    ]
    view, registry = build([pod("a", "10.244.4.4", "a", "s")], static)
    assert ptrs(view, "4.4.244.10.in-addr.arpa") == [f"4.4.244.10.in-addr.arpa. 30 IN PTR a.s.default.{ZONE}."]
    assert answer_text(ask(view, f"a.s.default.{ZONE}")) == [f"a.s.default.{ZONE}. 30 IN A 10.244.4.4"]
    # Forward-confirmed: the static name lost its only address to the pod, and the
    # static line whose only name the pod owns gives no PTR.
    assert rcode(ask(view, f"legacy.{ZONE}")) == "NXDOMAIN"
    assert rcode(ask(view, "1.9.244.10.in-addr.arpa", "PTR")) == "NXDOMAIN"
    assert registry.stats()["conflicts"] == 2
    registry.sink("test").delete("uid-default-a")
    assert ptrs(view, "4.4.244.10.in-addr.arpa") == [f"4.4.244.10.in-addr.arpa. 30 IN PTR legacy.{ZONE}."]
    assert answer_text(ask(view, f"legacy.{ZONE}")) == [f"legacy.{ZONE}. 30 IN A 10.244.4.4"]
    assert answer_text(ask(view, f"a.s.default.{ZONE}")) == [f"a.s.default.{ZONE}. 30 IN A 10.244.9.1"]
    assert ptrs(view, "1.9.244.10.in-addr.arpa") == [f"1.9.244.10.in-addr.arpa. 30 IN PTR a.s.default.{ZONE}."]
    assert registry.stats()["conflicts"] == 0


def test_static_reload_applies_only_the_difference():
    view, registry = build([], [StaticEntry("10.244.0.2", (f"gw.{ZONE}",), 1)])
    registry.replace_static([StaticEntry("10.244.0.3", (f"gw.{ZONE}",), 1)])
    assert answer_text(ask(view, f"gw.{ZONE}")) == [f"gw.{ZONE}. 30 IN A 10.244.0.3"]
    assert rcode(ask(view, "2.0.244.10.in-addr.arpa", "PTR")) == "NXDOMAIN"


def test_set_name_follows_members_and_disappears_with_them():
    view, registry = build([pod(f"k-{i}", f"10.244.1.{i}", f"k-{i}", "k") for i in range(1, 4)])
    assert len(answer_text(ask(view, f"k.default.{ZONE}"))) == 3
    sink = registry.sink("test")
    sink.replace_all([strip_pod(pod("k-1", "10.244.1.1", "k-1", "k"))])
    assert answer_text(ask(view, f"k.default.{ZONE}")) == [f"k.default.{ZONE}. 30 IN A 10.244.1.1"]
    sink.replace_all([])
    assert rcode(ask(view, f"k.default.{ZONE}")) == "NXDOMAIN"
    assert rcode(ask(view, f"default.{ZONE}")) == "NXDOMAIN"  # the empty non-terminal went too


def test_pod_moving_to_a_new_ip_moves_its_ptr():
    view, registry = build([pod("a", "10.244.1.1", "a", "s")])
    registry.sink("test").upsert(strip_pod(pod("a", "10.244.1.2", "a", "s")))
    assert rcode(ask(view, "1.1.244.10.in-addr.arpa", "PTR")) == "NXDOMAIN"
    assert ptrs(view, "2.1.244.10.in-addr.arpa") == [f"2.1.244.10.in-addr.arpa. 30 IN PTR a.s.default.{ZONE}."]


def test_failed_phase_removes_the_name():
    view, registry = build([pod("a", "10.244.1.1", "a", "s")])
    registry.sink("test").upsert(strip_pod(pod("a", "10.244.1.1", "a", "s", phase="Failed")))
    assert rcode(ask(view, f"a.s.default.{ZONE}")) == "NXDOMAIN"
    assert rcode(ask(view, "1.1.244.10.in-addr.arpa", "PTR")) == "NXDOMAIN"


def test_debug_description_lists_owners_and_conflicts():
    _, registry = build([kdc("kdc-1-new", "10.244.2.30", "2026-11-02T08:00:00Z"), kdc("kdc-1-old", "10.244.1.99", "2026-10-01T08:00:00Z")])
    info = registry.describe()
    assert info["identities"] == [
        {"name": f"{NAME}.", "ips": ["10.244.1.99"], "pod": "security/kdc-1-old", "uid": "uid-security-kdc-1-old", "source": "test"}
    ]
    assert info["conflicts"][0]["kind"] == "name"
    assert "kdc-1-new" in info["conflicts"][0]["loser"]


def test_fallback_ptr_can_be_turned_off():
    view, _ = build([pod("web", "10.244.2.50")], fallback_ptr=False)
    assert rcode(ask(view, "50.2.244.10.in-addr.arpa", "PTR")) == "NXDOMAIN"
    view, _ = build([pod("web", "10.244.2.50")], fallback_ptr=True)
    assert ptrs(view, "50.2.244.10.in-addr.arpa") == ["50.2.244.10.in-addr.arpa. 30 IN PTR 10-244-2-50.default.pod.cluster.local."]


def test_fallback_ptr_yields_to_an_identity_on_the_same_ip():
    view, registry = build([pod("web", "10.244.2.50", created="2026-10-01T00:00:00Z")], fallback_ptr=True)
    registry.sink("test").upsert(strip_pod(pod("db-0", "10.244.2.50", "db-0", "db")))
    assert ptrs(view, "50.2.244.10.in-addr.arpa") == [f"50.2.244.10.in-addr.arpa. 30 IN PTR db-0.db.default.{ZONE}."]


def test_status_churn_that_serves_nothing_new_changes_nothing():
    view, registry = build([pod("a", "10.244.1.1", "a", "s")])
    zone = view.zones[b"\x04pods\x07example\x08internal\x00"]
    serial = zone.serial
    churned = pod("a", "10.244.1.1", "a", "s")
    churned["status"]["conditions"][0]["lastTransitionTime"] = "2026-11-20T00:00:00Z"
    record = strip_pod(churned)
    assert record.changed_at is not None
    registry.sink("test").upsert(record)
    assert zone.serial == serial
    registry.sink("test").upsert(strip_pod(pod("a", "10.244.1.2", "a", "s")))
    assert zone.serial > serial


_LABEL_TEXT = st.text(alphabet="abcXYZ09-._ é", min_size=0, max_size=70)


@settings(max_examples=300, deadline=None)
@given(hostname=_LABEL_TEXT.filter(str.strip), subdomain=_LABEL_TEXT.filter(str.strip), namespace=st.sampled_from(["default", "a" * 60]))
def test_identity_name_is_the_template_text_as_a_dns_name(hostname, subdomain, namespace):
    # The default template has a fast path; it must name exactly what the text would. The record is
    # made past pod_record's checks (which refuse such names), so the registry meets any text.
    view, registry = build([])
    record = strip_pod(pod("p", "10.244.0.5", "h", "s", namespace))._replace(hostname=hostname.lower(), subdomain=subdomain.lower())
    registry.sink("test").replace_all([record])
    try:
        expected = to_wire(f"{hostname}.{subdomain}.{namespace}.{ZONE}")
    except ValueError:
        expected = None
    served = [identity["name"] for identity in registry.describe()["identities"]]
    assert served == ([to_text(expected)] if expected else [])
    if expected:
        assert view.rrset(expected, 1) == [bytes([10, 244, 0, 5])]
        assert view.rrset(reverse_name("10.244.0.5"), 12) == [expected]


def test_a_crowd_on_one_name_keeps_one_owner_through_every_change():
    """A Deployment whose pods all set one hostname and subdomain: the oldest owns the name (bench/crowds.py
    shows the cost stays linear in the crowd to load and constant per change of a loser)."""
    crowd = [
        pod(f"w-{i}", f"10.244.{i // 250}.{i % 250 + 1}", "w", "s", created=f"2026-11-01T00:{i // 60:02d}:{i % 60:02d}Z")
        for i in range(1500)
    ]
    view, registry = build(crowd)
    name = f"w.s.default.{ZONE}"
    assert answer_text(ask(view, name)) == [f"{name}. 30 IN A 10.244.0.1"]
    assert registry.stats()["conflicts"] == 1499
    sink = registry.sink("test")
    sink.upsert(strip_pod(pod("w-7", "10.244.9.9", "w", "s", created="2026-11-01T00:00:07Z")))  # a loser moves
    assert rcode(ask(view, "9.9.244.10.in-addr.arpa", "PTR")) == "NXDOMAIN" and registry.stats()["conflicts"] == 1499
    sink.delete("uid-default-w-0")  # the owner goes: the next oldest has the name
    assert answer_text(ask(view, name)) == [f"{name}. 30 IN A 10.244.0.2"]
    assert ptrs(view, "2.0.244.10.in-addr.arpa") == [f"2.0.244.10.in-addr.arpa. 30 IN PTR {name}."]
    assert registry.stats()["conflicts"] == 1498
    sink.replace_all([])
    assert rcode(ask(view, name)) == "NXDOMAIN" and registry.stats()["conflicts"] == 0


def test_a_name_that_becomes_a_crowd_in_one_change_leaves_no_stale_ptr():
    """17 older pods take a pod's name in one change (the name passes from one claim to a tuple to a crowd):
    the pod that owned it loses its PTR too, not only the name."""
    store, registry = build([pod("a", "10.244.0.7", "h0", "s0", created="2026-11-01T10:00:00Z")])
    older = [pod(f"c{i}", f"10.244.1.{i + 1}", "h0", "s0", created="2026-11-01T09:00:00Z", uid=f"uc{i:02d}") for i in range(17)]
    registry.sink("test").update([strip_pod(p) for p in older], [])
    assert answer_text(ask(store, f"h0.s0.default.{ZONE}")) == [f"h0.s0.default.{ZONE}. 30 IN A 10.244.1.1"]
    assert rcode(ask(store, "7.0.244.10.in-addr.arpa", "PTR")) == "NXDOMAIN"


def test_an_ip_that_becomes_a_crowd_in_one_change_leaves_the_old_owner_without_it():
    """17 older pods, each with its own name, report a pod's IP in one change: the pod that owned the IP drops it
    from its A record (a name left with no address is not served), and the PTR names the new owner."""
    store, registry = build([pod("a", "10.244.0.7", "a", "s", created="2026-11-01T10:00:00Z")])
    older = [pod(f"c{i}", "10.244.0.7", f"c{i}", "s", created="2026-11-01T09:00:00Z", uid=f"uc{i:02d}") for i in range(17)]
    registry.sink("test").update([strip_pod(p) for p in older], [])
    assert rcode(ask(store, f"a.s.default.{ZONE}")) == "NXDOMAIN"
    assert answer_text(ask(store, "7.0.244.10.in-addr.arpa", "PTR")) == [f"7.0.244.10.in-addr.arpa. 30 IN PTR c0.s.default.{ZONE}."]
