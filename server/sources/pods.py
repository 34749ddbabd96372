"""Stripping Pod objects to PodRecords: the one place each raw field's meaning is decided.

Every source (pod file, Kubernetes watch) turns raw Pod objects into
`PodRecord`s the moment they arrive and hands them to a `PodSink`.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ..model import PodRecord

_NEVER = float("inf")  # creationTimestamp unknown: sorts last


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
    try:
        socket.inet_pton(socket.AF_INET, value)
        return value  # accepted only in canonical dotted-decimal form: already normal
    except OSError:
        pass
    try:
        return ipaddress.ip_address(value.strip()).compressed
    except ValueError:
        return None


def strip_pod(obj: Any) -> PodRecord:
    """Reduce a Pod object (parsed JSON/YAML) to a PodRecord.

    Raises ValueError when the object is not a usable Pod.
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
) -> PodRecord:
    """The PodRecord of a pod's raw field values: the one place their meaning is decided.

    `conditions` are (type, status, lastTransitionTime). Strings that repeat
    across pods are shared, so 100k records hold one copy of each namespace.
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
    ips: list[str] = []
    for entry in pod_ips:
        ip = _normal_ip(entry)
        if ip and ip not in ips:
            ips.append(ip)
    if not ips:
        ip = _normal_ip(pod_ip)
        if ip:
            ips.append(ip)
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
            tuple(ips),
            _intern(phase) if phase else "",
            ready,
            host_network,
            created_at if created_at is not None else _NEVER,
            bool(deleted),
            _latest(stamps, created, created_at),
        ),
    )


_new_record = tuple.__new__
