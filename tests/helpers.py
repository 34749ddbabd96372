"""Shared test helpers: pods, a registry-backed zone view, and queries through dnspython."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from server.registry import Registry, RegistrySettings
from server.sources.pods import strip_pod
from server.zone.fastpath import respond
from server.zone.store import ZoneSettings, ZoneStore
from tests.conftest import ZONE


def pod(
    name: str,
    ips,
    hostname: str | None = None,
    subdomain: str | None = None,
    namespace: str = "default",
    uid: str | None = None,
    created: str = "2026-11-01T10:00:00Z",
    deleting: str | None = None,
    phase: str = "Running",
    ready: bool = True,
    host_network: bool = False,
    labels: dict | None = None,
    ports: list[tuple] | None = None,
    hostname_override: str | None = None,
) -> dict:
    """A Pod object as the API (or kubectl -o json) returns it."""
    ips = [ips] if isinstance(ips, str) else list(ips)
    meta = {"name": name, "namespace": namespace, "uid": uid or f"uid-{namespace}-{name}", "creationTimestamp": created}
    if labels:
        meta["labels"] = labels
    if deleting:
        meta["deletionTimestamp"] = deleting
    spec: dict = {"containers": [{"name": "c", "image": "busybox"}]}
    if hostname:
        spec["hostname"] = hostname
    if subdomain:
        spec["subdomain"] = subdomain
    if host_network:
        spec["hostNetwork"] = True
    if ports:  # (name, containerPort[, protocol])
        spec["containers"][0]["ports"] = [
            {"name": p[0], "containerPort": p[1], **({"protocol": p[2]} if len(p) > 2 else {})} for p in ports
        ]
    if hostname_override:
        spec["hostnameOverride"] = hostname_override
    status: dict = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ips:
        status["podIP"] = ips[0]
        status["podIPs"] = [{"ip": ip} for ip in ips]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def sts_pod(set_name: str, index: int, ip, namespace: str = "default", **kw) -> dict:
    """A StatefulSet member: hostname = pod name, subdomain = the set's service."""
    return pod(f"{set_name}-{index}", ip, f"{set_name}-{index}", set_name, namespace, **kw)


def build(
    pods=(),
    static=(),
    zones=(ZONE,),
    cidrs=("10.244.0.0/16", "fd00:10:244::/48"),
    ttl: int = 30,
    negative_ttl: int = 5,
    **registry_kw,
) -> tuple[ZoneStore, Registry]:
    view = ZoneStore(ZoneSettings(tuple(zones), tuple(cidrs), ttl, negative_ttl))
    registry = Registry(view, RegistrySettings(zone=zones[0], **registry_kw))
    sink = registry.sink("test")
    sink.replace_all([strip_pod(p) for p in pods])
    sink.set_synced(True)
    if static:
        registry.replace_static(static)
    return view, registry


def ask(view: ZoneStore, qname: str, qtype: str = "A", tcp: bool = False, **make_kw) -> dns.message.Message:
    """Query the answer function with a dnspython-made query; parse the reply with dnspython."""
    query = dns.message.make_query(qname, qtype, **make_kw)
    wire = query.to_wire()
    reply = respond(wire, view, tcp)
    assert reply is not None, "no reply"
    assert reply[:2] == wire[:2], "reply ID differs"
    return dns.message.from_wire(reply)


def answer_text(message: dns.message.Message) -> list[str]:
    """Answer RRs as sorted zone-file lines 'name ttl IN TYPE rdata'."""
    return sorted(_lines(message.answer))


def authority_text(message: dns.message.Message) -> list[str]:
    return sorted(_lines(message.authority))


def additional_text(message: dns.message.Message) -> list[str]:
    return sorted(_lines(message.additional))


def _lines(section) -> list[str]:
    lines = []
    for rrset in section:
        for rdata in rrset:
            lines.append(f"{rrset.name.to_text().lower()} {rrset.ttl} IN {dns.rdatatype.to_text(rrset.rdtype)} {rdata.to_text()}")
    return lines


def rcode(message: dns.message.Message) -> str:
    return dns.rcode.to_text(message.rcode())
