"""Forward-confirmed reverse DNS as an invariant, checked on the served answers after every change.

For every identity name N and every address I of N inside a reverse zone, the
PTR of I is one record and it is N; for every PTR I -> N with N inside a
forward zone, N's A/AAAA holds I. Static aliases (a hosts line's other names)
may hold I while I's PTR names the line's first owned name; set names
aggregate and are not identities. Random mixes of pods and static lines that
collide on names and IPs, applied one change at a time.
"""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from server.model import StaticEntry
from server.sources.pods import strip_pod
from server.sources.recordsfile import parse_records_text
from tests.helpers import ZONE, ask, build, pod, rcode

V4 = [f"10.244.0.{i}" for i in range(1, 6)]
V6 = [f"fd00:10:244::{i}" for i in range(1, 4)]
OUTSIDE = ["192.0.2.1"]  # outside every reverse zone
HOSTS = ["h0", "h1"]
SUBDOMAINS = ["s", "t"]
NAMESPACES = ["default", "x"]
POD_NAMES = [f"{h}.{s}.{ns}.{ZONE}" for h in HOSTS for s in SUBDOMAINS for ns in NAMESPACES]
STATIC_ONLY = [f"alias-{i}.{ZONE}" for i in range(3)] + ["legacy.corp.example.com"]
OVERRIDES = [f"ov-{i}.{ZONE}" for i in range(2)]  # spec.hostnameOverride names

pod_spec = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["a", "b", "c", "d", "e"]),
        "namespace": st.sampled_from(NAMESPACES),
        "hostname": st.sampled_from([*HOSTS, None]),
        "subdomain": st.sampled_from(SUBDOMAINS),
        "ips": st.lists(st.sampled_from(V4 + OUTSIDE), max_size=1),
        "v6": st.lists(st.sampled_from(V6), max_size=1),
        "created": st.integers(1, 4),
        "terminating": st.booleans(),
        "phase": st.sampled_from(["Running", "Running", "Pending", "Succeeded"]),
        "host_network": st.sampled_from([False, False, False, True]),
        "override": st.sampled_from([None, None, *OVERRIDES, POD_NAMES[0], "out.corp.example.com"]),
    }
)
static_line = st.tuples(
    st.sampled_from(V4 + V6 + OUTSIDE), st.lists(st.sampled_from(POD_NAMES + STATIC_ONLY), min_size=1, max_size=3, unique=True)
)
record_line = st.one_of(
    st.tuples(st.just("A"), st.sampled_from(V4 + V6), st.sampled_from(POD_NAMES + OVERRIDES + STATIC_ONLY)),
    st.tuples(st.just("PTR"), st.sampled_from(V4 + V6), st.sampled_from(POD_NAMES + OVERRIDES + STATIC_ONLY)),
)
# A crowd: more pods on one name (and IP) than a tuple holds, arriving or leaving in one change.
crowd = st.tuples(st.integers(17, 20), st.sampled_from(HOSTS), st.sampled_from(V4), st.integers(1, 4), st.booleans())
step = st.one_of(
    st.tuples(st.just("crowd"), crowd),
    st.tuples(st.just("records"), st.lists(record_line, max_size=4)),
    st.tuples(st.just("upsert"), pod_spec),
    st.tuples(st.just("delete"), st.tuples(st.sampled_from(NAMESPACES), st.sampled_from(["a", "b", "c", "d", "e"]))),
    st.tuples(st.just("static"), st.lists(static_line, max_size=4)),
)


def _pod(spec: dict) -> dict:
    hostname = spec["hostname"]
    return pod(
        spec["name"],
        spec["ips"] + spec["v6"],
        hostname,
        spec["subdomain"] if hostname else None,
        spec["namespace"],
        created=f"2026-11-0{spec['created']}T00:00:00Z",
        deleting="2026-11-09T00:00:00Z" if spec["terminating"] else None,
        phase=spec["phase"],
        host_network=spec["host_network"],
        hostname_override=spec["override"],
    )


def _addresses(store, name: str) -> list[str]:
    out = []
    for qtype in ("A", "AAAA"):
        reply = ask(store, name, qtype)
        out += [rdata.address for rrset in reply.answer for rdata in rrset]
    return out


def _ptrs(store, ip: str) -> tuple[str, list[str]]:
    reply = ask(store, ipaddress.ip_address(ip).reverse_pointer, "PTR")
    return rcode(reply), [rdata.target.to_text().rstrip(".") for rrset in reply.answer for rdata in rrset]


def _in_reverse_zone(ip: str) -> bool:
    return ip not in OUTSIDE


def _check(store, static_lines: list[tuple[str, list[str]]]) -> None:
    on_line = {(ip, name) for ip, line_names in static_lines for name in line_names}
    for ip in V4 + V6:
        status, targets = _ptrs(store, ip)
        assert status in ("NOERROR", "NXDOMAIN"), (ip, status)
        assert len(targets) <= 1, f"{ip} has several PTRs: {targets}"
        if targets and targets[0].endswith(ZONE):
            assert ip in _addresses(store, targets[0]), f"PTR {ip} -> {targets[0]}, which does not resolve back to it"
    for name in POD_NAMES + OVERRIDES + STATIC_ONLY[:-1]:
        for ip in _addresses(store, name):
            if not _in_reverse_zone(ip):
                continue
            _, targets = _ptrs(store, ip)
            assert len(targets) == 1, f"{name} holds {ip}, which has no single PTR: {targets}"
            if targets[0] != name:
                # Allowed only for a static alias: both names on hosts lines with that IP.
                assert (ip, name) in on_line and (ip, targets[0]) in on_line, f"{name} holds {ip}, whose PTR names {targets[0]}"


@settings(max_examples=150, deadline=None)
@given(st.lists(step, min_size=1, max_size=12))
def test_every_answer_is_forward_confirmed_after_every_change(steps):
    store, registry = build([], fallback_ptr=True)
    sink = registry.sink("test")
    static_lines: list[tuple[str, list[str]]] = []
    record_lines: list[tuple[str, list[str]]] = []
    for kind, value in steps:
        if kind == "upsert":
            sink.upsert(strip_pod(_pod(value)))
        elif kind == "delete":
            sink.delete(f"uid-{value[0]}-{value[1]}")
        elif kind == "crowd":
            count, hostname, ip, created, leaving = value
            uids = [f"uid-default-crowd-{i}" for i in range(count)]
            if leaving:
                sink.update([], uids)
            else:
                members = [
                    pod(f"crowd-{i}", [ip], hostname, "s", created=f"2026-10-0{created}T0{i % 10}:00:00Z") for i in range(count)
                ]  # older: they win
                sink.update([strip_pod(member) for member in members], [])
        elif kind == "records":  # the records file: A as hosts lines, PTR when forward-confirmed
            text = "".join(
                f"{name}. {'AAAA' if ':' in ip else 'A'} {ip}\n"
                if rtype == "A"
                else f"{ipaddress.ip_address(ip).reverse_pointer}. PTR {name}.\n"
                for rtype, ip, name in value
            )
            record_lines = [(ip, [name]) for rtype, ip, name in value if rtype == "A"]
            registry.replace_records(parse_records_text("records", text, ZONE, 30))
        else:
            static_lines = value
            registry.replace_static([StaticEntry(ip, tuple(n), i + 1) for i, (ip, n) in enumerate(value)])
        lines = static_lines + record_lines
        _check(store, lines)
