"""Stripping Pod objects to PodRecords: the one place each raw field's meaning is decided.

Every source (pod file, Kubernetes watch) turns raw Pod objects into
`PodRecord`s the moment they arrive and hands them to a `PodSink`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ..model import (
    PORT_PROTOCOLS,
    PodRecord,
    dns_label_problem,
    dns_subdomain_problem,
    hostname_override_problem,
    normal_ip,
    port_name_problem,
    shown,
)
from .problems import EXTRA_IPS, INVALID_IP, INVALID_NAME, INVALID_PORT, Report, WarnOnce

log = logging.getLogger("pod_identity_dns.pods")

_NEVER = float("inf")  # creationTimestamp unknown: sorts last

# Where a pod's problems go when the caller collects none (the watch): once per pod and problem.
_warn_once = WarnOnce(log)


# Namespaces and subdomains repeat across pods: their checks are remembered (bounded).
_LABEL_CHECKS: dict[str, str | None] = {}
_LABEL_CHECKS_LIMIT = 4096


def _shared_label_problem(value: str) -> str | None:
    """dns_label_problem of a value many pods share, remembered."""
    try:
        return _LABEL_CHECKS[value]
    except KeyError:
        if len(_LABEL_CHECKS) >= _LABEL_CHECKS_LIMIT:
            _LABEL_CHECKS.clear()
        problem = _LABEL_CHECKS[value] = dns_label_problem(value)
        return problem


def warn_once(reason: str, pod: str, message: str) -> None:
    """The default Report: log each pod's problem once."""
    _warn_once(f"pod {pod}: {message}")


def _timestamp(value: Any) -> float | None:
    """Unix seconds of an RFC 3339 timestamp; None when it is not one."""
    if type(value) is not str or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _intern(text: str) -> str:
    return sys.intern(text) if len(text) <= 64 else text


def _latest(stamps: list[Any], created: Any, created_at: float | None) -> float | None:
    """The newest of these timestamps, parsing at most one when all are in the API's own form.

    That form, 2026-11-01T10:00:00Z, sorts as text in time order. `created`
    is among `stamps`, already parsed as `created_at`.
    """
    newest = None
    for stamp in stamps:
        if not stamp:
            continue
        if type(stamp) is not str or len(stamp) != 20 or stamp[10] != "T" or stamp[19] != "Z":
            known = [t for t in map(_timestamp, stamps) if t is not None]
            return max(known) if known else None
        if newest is None or stamp > newest:
            newest = stamp
    if newest is None:
        return None
    parsed = created_at if newest == created else _timestamp(newest)
    if parsed is None:  # the API's shape but no real time (month 00): look at them all
        known = [t for t in map(_timestamp, stamps) if t is not None]
        return max(known) if known else None
    return parsed


def _normal_ip(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return normal_ip(value.strip())


def strip_pod(obj: Any, report: Report = warn_once) -> PodRecord:
    """Reduce a Pod object (parsed JSON/YAML) to a PodRecord.

    Raises ValueError when the object is not a usable Pod; values it cannot
    use (see pod_record) go to `report`.
    """
    if not isinstance(obj, dict):
        raise ValueError("not an object")
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise ValueError("no metadata")
    spec: dict = obj["spec"] if isinstance(obj.get("spec"), dict) else {}
    status: dict = obj["status"] if isinstance(obj.get("status"), dict) else {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("no metadata.name")
    namespace = meta.get("namespace") or "default"
    uid = meta.get("uid") or f"{namespace}/{name}"
    if not isinstance(namespace, str) or not isinstance(uid, str):
        raise ValueError("bad metadata.namespace or metadata.uid")
    conditions = [
        (cond.get("type"), cond.get("status"), cond.get("lastTransitionTime"))
        for cond in _list(status.get("conditions"))
        if isinstance(cond, dict)
    ]
    hostname = spec.get("hostname")
    subdomain = spec.get("subdomain")
    phase = status.get("phase")
    return pod_record(
        name,
        namespace,
        uid,
        meta.get("creationTimestamp"),
        meta.get("deletionTimestamp"),
        hostname if isinstance(hostname, str) else None,
        subdomain if isinstance(subdomain, str) else None,
        spec.get("hostNetwork") is True,
        phase if isinstance(phase, str) else None,
        [entry.get("ip") if isinstance(entry, dict) else None for entry in _list(status.get("podIPs"))],
        status.get("podIP"),
        conditions,
        report,
        tuple(
            (port.get("name"), port.get("protocol"), port.get("containerPort"))
            for container in _list(spec.get("containers"))
            if isinstance(container, dict)
            for port in _list(container.get("ports"))
            if isinstance(port, dict) and port.get("name")
        ),
        spec.get("hostnameOverride"),
    )


def _list(value: Any) -> list:
    """A field that should be a list; anything else (null, a stray scalar) counts as empty."""
    return value if isinstance(value, list) else []


def pod_record(
    name: str,
    namespace: str | None,
    uid: str | None,
    created: Any,
    deleted: Any,
    hostname: str | None,
    subdomain: str | None,
    host_network: bool,
    phase: str | None,
    pod_ips: Iterable[Any],
    pod_ip: Any,
    conditions: Iterable[tuple[Any, Any, Any]],
    report: Report = warn_once,
    ports: tuple[tuple[Any, Any, Any], ...] = (),
    hostname_override: Any = None,
) -> PodRecord:
    """The PodRecord of a pod's raw field values: the one place their meaning is decided.

    `conditions` are (type, status, lastTransitionTime). Strings that repeat
    across pods are shared, so 100k records hold one copy of each namespace.

    What Kubernetes would refuse is not served, and told to `report`: a
    hostname, subdomain or pod name that is not a DNS name loses the identity
    (the pod stays, its IPs may get a fallback PTR); a namespace that is not
    one loses the pod's IPs too, since every name of the pod holds it; an IP
    that is not one is skipped, and so is every IP past the first IPv4 and the
    first IPv6 (status.podIPs holds at most one of each).
    """
    if not name:
        raise ValueError("no metadata.name")
    namespace = _intern(namespace or "default")
    uid = uid or f"{namespace}/{name}"
    ready = False
    stamps = [created, deleted]
    for kind, value, changed in conditions:
        stamps.append(changed)
        if kind == "Ready":
            ready = value == "True"
    ips = _pod_ips(pod_ips, pod_ip, namespace, name, report)
    if hostname and subdomain:
        problem = _naming_problem(name, hostname, subdomain)
        if problem:
            report(INVALID_NAME, _pod(namespace, name), f"{problem}: no identity name (its IPs may still get a fallback PTR)")
            hostname = subdomain = None
    override = ""
    if hostname_override:
        problem = hostname_override_problem(hostname_override) if isinstance(hostname_override, str) else "not a string"
        if problem:
            report(INVALID_NAME, _pod(namespace, name), f"spec.hostnameOverride {problem}: ignored")
        else:
            override = hostname_override.lower().rstrip(".")
    problem = _shared_label_problem(namespace)
    if problem:
        report(INVALID_NAME, _pod(namespace, name), f"metadata.namespace {problem}: the pod serves nothing")
        hostname = subdomain = None
        override = ""
        ips = ()
    named_ports = (_PORT_SETS.get(ports) or _named_ports(ports, namespace, name, report)) if ports else ()
    created_at = _timestamp(created)
    # tuple.__new__ in C, not the NamedTuple's Python-level __new__: one per watch event.
    return _new_record(
        PodRecord,
        (
            uid,
            namespace,
            name,
            # A StatefulSet pod's hostname is its name: keep one string for both.
            "" if not hostname else name if hostname == name and name.islower() else hostname.lower(),
            _intern(subdomain.lower()) if subdomain else "",
            ips,
            _intern(phase) if phase else "",
            ready,
            host_network,
            created_at if created_at is not None else _NEVER,
            bool(deleted),
            named_ports,
            override,
            _latest(stamps, created, created_at),
        ),
    )


def _named_ports(ports: Iterable[tuple[Any, Any, Any]], namespace: str, name: str, report: Report) -> tuple[tuple[str, str, int], ...]:
    """The named container ports as (name, protocol label, number), first of each name and protocol;
    unnamed ones are skipped silently, invalid ones told. Every member of a set declares the same ports:
    each (name, protocol, number) is checked once and its tuple shared."""
    kept: list[tuple[str, str, int]] = []
    refused = False
    for declared in ports:
        port = _PORTS.get(declared)
        if port is None:
            port, problem = _checked_port(*declared)
            if problem is not None:
                report(INVALID_PORT, _pod(namespace, name), f"{problem}: no SRV record for it")
                refused = True
                continue
            if len(_PORTS) > 100_000:
                _PORTS.clear()
            _PORTS[declared] = port
        if all(k[0] != port[0] or k[1] != port[1] for k in kept):
            kept.append(port)
    if not refused and isinstance(ports, tuple):  # the next pod declaring the same gets the same tuple at once
        if len(_PORT_SETS) > 100_000:
            _PORT_SETS.clear()
        _PORT_SETS[ports] = tuple(kept)
    return tuple(kept)


def _checked_port(port_name: Any, protocol: Any, number: Any) -> tuple[Any, str | None]:
    if not isinstance(port_name, str):
        return None, "a port name that is not a string"
    problem = port_name_problem(port_name)
    if problem is not None:
        return None, problem
    label = PORT_PROTOCOLS.get(protocol or "TCP") if isinstance(protocol or "TCP", str) else None
    if label is None:
        return None, f"port {shown(port_name)}: protocol {shown(protocol)} is not TCP, UDP or SCTP"
    if not (type(number) is int and 0 < number < 65536):
        return None, f"port {shown(port_name)}: containerPort {shown(number)} is not a port number"
    return (port_name, label, number), None


_PORTS: dict[tuple, tuple[str, str, int]] = {}
_PORT_SETS: dict[
    tuple, tuple[tuple[str, str, int], ...]
] = {}  # a pod's declared ports -> its named ports  # (name, protocol, number) as declared -> the checked port, shared


_new_record = tuple.__new__


def _pod(namespace: str, name: str) -> str:
    """The pod's namespace/name for a log line, quoted when it holds what a name cannot."""
    key = f"{namespace}/{name}"
    return key if len(key) <= 120 and key.isprintable() and " " not in key else shown(key, 120)


def _naming_problem(name: str, hostname: str, subdomain: str) -> str | None:
    """Why the pod's naming fields cannot make a name, as Kubernetes validates them; None when they can."""
    problem = dns_label_problem(hostname)
    if problem:
        return f"spec.hostname {problem}"
    problem = _shared_label_problem(subdomain)
    if problem:
        return f"spec.subdomain {problem}"
    problem = None if name == hostname else dns_subdomain_problem(name)  # a valid label is a valid subdomain
    if problem:
        return f"metadata.name {problem}"
    return None


def _pod_ips(pod_ips: Iterable[Any], pod_ip: Any, namespace: str, name: str, report: Report) -> tuple[str, ...]:
    """The first IPv4 and the first IPv6 of status.podIPs (else status.podIP), in their order."""
    kept: list[str] = []
    v4 = v6 = None
    bad: list[Any] = []
    extra = total = 0
    for entry in pod_ips:
        total += 1
        if entry is None:
            continue  # an entry without an "ip"
        ip = _normal_ip(entry)
        if ip is None:
            bad.append(entry)
        elif ":" in ip:
            if v6 is None:
                v6 = ip
                kept.append(ip)
            elif ip != v6:
                extra += 1
        elif v4 is None:
            v4 = ip
            kept.append(ip)
        elif ip != v4:
            extra += 1
    field_name = "status.podIPs"
    if not kept and pod_ip is not None and pod_ip not in bad:
        ip = _normal_ip(pod_ip)
        if ip is None:
            bad.append(pod_ip)
            field_name = "status.podIP" if len(bad) == 1 else "status.podIPs and status.podIP"
        else:
            kept.append(ip)
    if bad:
        values = ", ".join(shown(value) for value in bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        left = f"kept {', '.join(kept)}" if kept else "the pod has no IP left"
        report(INVALID_IP, _pod(namespace, name), f"{field_name}: {values}: not an IP address, skipped; {left}")
    if extra:
        report(
            EXTRA_IPS,
            _pod(namespace, name),
            f"status.podIPs has {total} addresses, Kubernetes allows one IPv4 and one IPv6: kept {' and '.join(kept)}, skipped {extra}",
        )
    return tuple(kept)
