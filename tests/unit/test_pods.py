"""Stripping pods: what a record's timestamps mean, and what is refused of its names and IPs."""

from __future__ import annotations

import ipaddress
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.model import hostname_override_problem, normal_ip
from server.sources.pods import pod_record


def _rfc3339_seconds(text: str) -> float | None:
    """The meaning: Unix seconds of an ISO 8601 / RFC 3339 timestamp, or None."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _two(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda n: f"{n:02d}")


# The API's own form with fields at and past their limits, and near-misses of it.
_API_FORM = st.builds(
    lambda y, mo, d, h, mi, s: f"{y}-{mo}-{d}T{h}:{mi}:{s}Z",
    st.integers(1969, 2100),
    _two(0, 13),
    _two(0, 32),
    _two(0, 25),
    _two(0, 61),
    _two(0, 61),
)
_NEAR_MISSES = st.text(alphabet="0123456789-T:Z+. ٣", min_size=19, max_size=21)
_STAMPS = st.one_of(_API_FORM, _NEAR_MISSES, st.sampled_from(["2026-11-01T10:00:00.5Z", "2026-11-01T10:00:00+02:00"]))


@settings(max_examples=1000, deadline=None)
@given(created=_STAMPS, ready_at=_STAMPS)
def test_timestamps_mean_what_rfc3339_says(created, ready_at):
    record = pod_record("p", "default", "u", created, None, None, None, False, "Running", [], None, [("Ready", "True", ready_at)])
    expected_created = _rfc3339_seconds(created)
    assert record.created == (float("inf") if expected_created is None else expected_created)
    known = [t for t in (expected_created, _rfc3339_seconds(ready_at)) if t is not None]
    assert record.changed_at == (max(known) if known else None)


# -- what Kubernetes would refuse is not served, from any source --


def _record(report=None, **fields):
    values = {
        "name": "web-0",
        "namespace": "default",
        "uid": "u-1",
        "created": "2026-11-01T10:00:00Z",
        "deleted": None,
        "hostname": "web-0",
        "subdomain": "web",
        "host_network": False,
        "phase": "Running",
        "pod_ips": ["10.244.0.1"],
        "pod_ip": "10.244.0.1",
        "conditions": [],
    }
    values.update(fields)
    told: list[tuple[str, str, str]] = []
    record = pod_record(*values.values(), report=lambda *problem: told.append(problem))
    return record, told


@pytest.mark.parametrize(
    "fields,served,problem",
    [
        ({}, True, None),
        ({"hostname": "Web-0", "subdomain": "WEB"}, True, None),  # DNS ignores case; the record is lower case
        ({"hostname": "w" * 63}, True, None),
        (
            {"hostname": "w" * 64},
            False,
            "spec.hostname 'wwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwwww'... (64 characters) is not a DNS label",
        ),
        ({"hostname": "*"}, False, "spec.hostname '*' is not a DNS label"),
        ({"hostname": " sp "}, False, "spec.hostname ' sp ' is not a DNS label"),
        ({"hostname": "a\x00"}, False, "spec.hostname 'a\\x00' is not a DNS label"),
        ({"hostname": "-a"}, False, "spec.hostname '-a' is not a DNS label"),
        ({"hostname": "a_b"}, False, "spec.hostname 'a_b' is not a DNS label"),
        ({"hostname": "\u212aafka"}, False, "spec.hostname '\u212aafka' is not a DNS label"),  # the Kelvin sign lowers to k
        ({"subdomain": "a/b"}, False, "spec.subdomain 'a/b' is not a DNS label"),
        ({"subdomain": "a.b"}, False, "spec.subdomain 'a.b' is not a DNS label"),
        ({"name": "Web_0", "hostname": "web-0"}, False, "metadata.name 'Web_0' is not a DNS subdomain"),
        ({"name": "web.0", "hostname": "web-0"}, True, None),  # a pod name may be a DNS subdomain
    ],
)
def test_names_are_checked_as_kubernetes_checks_them(fields, served, problem):
    record, told = _record(**fields)
    assert bool(record.hostname and record.subdomain) is served
    assert record.ips == ("10.244.0.1",)  # the pod stays: its IP may still get a fallback PTR
    if problem is None:
        assert told == []
    else:
        ((reason, pod, message),) = told
        assert (reason, pod) == ("invalid_name", f"default/{fields.get('name', 'web-0')}")
        assert message.startswith(problem) and message.endswith("no identity name (its IPs may still get a fallback PTR)")


def test_a_namespace_that_is_not_a_name_serves_nothing():
    record, told = _record(namespace="*")
    assert (record.hostname, record.ips) == ("", ())  # every name of the pod would hold it, the fallback PTR too
    assert told == [("invalid_name", "*/web-0", told[0][2])]
    assert told[0][2].startswith("metadata.namespace '*' is not a DNS label")


def test_a_pod_keeps_the_first_ip_of_each_family():
    record, told = _record(pod_ips=["fd00::1", "10.0.0.1", "10.0.0.1", "10.0.0.2", "fd00::1", "fd00::2"])
    assert record.ips == ("fd00::1", "10.0.0.1")
    assert told == [
        (
            "extra_ips",
            "default/web-0",
            "status.podIPs has 6 addresses, Kubernetes allows one IPv4 and one IPv6: kept fd00::1 and 10.0.0.1, skipped 2",
        )
    ]


def test_the_watch_warns_once_per_pod_and_problem(caplog):
    for _ in range(3):  # a pod's status changes often; its problem is told once
        pod_record("odd", "default", "u-odd", None, None, "*", "s", False, "Running", ["10.0.0.9"], None, [])
    pod_record("odd", "default", "u-odd", None, None, "x y", "s", False, "Running", ["10.0.0.9"], None, [])
    warnings = [r.getMessage() for r in caplog.records if r.name == "pod_identity_dns.pods"]
    assert [w.split(":")[1] for w in warnings] == [
        " spec.hostname '*' is not a DNS label (RFC 1123",
        " spec.hostname 'x y' is not a DNS label (RFC 1123",
    ]
    assert all(w.startswith("pod default/odd:") for w in warnings)


@pytest.mark.parametrize(
    "value,problem",
    [
        ("web-0", False),
        ("web-0.kafka.example", False),
        ("w" * 63, False),
        ("w" * 64, True),  # Kubernetes would take it; a DNS label is at most 63
        ("a." + "w" * 62, False),
        ("a." + "w" * 63, True),
        ("web_0", True),
        ("web-0.", True),
        ("", True),
    ],
)
def test_hostname_override_is_a_dns_subdomain_of_at_most_64_characters(value, problem):
    assert (hostname_override_problem(value) is not None) is problem


_ADDRESS_TEXT = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses(v=6).map(lambda ip: ip.exploded.upper()),
    st.ip_addresses(v=4).map(lambda ip: f"::ffff:{ip}"),
    st.text(alphabet="0123456789abcdefABCDEF.:% ", max_size=45),
)


@settings(max_examples=2000, deadline=None)
@given(text=_ADDRESS_TEXT)
def test_normal_ip_is_what_ipaddress_says(text):
    try:
        expected = ipaddress.ip_address(text).compressed
    except ValueError:
        expected = None
    assert normal_ip(text) == expected
