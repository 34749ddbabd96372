"""Stripped pods: the few fields of a Kubernetes Pod this server uses.

Every source (pod file, Kubernetes watch) turns raw Pod objects into
`PodRecord`s the moment they arrive and hands them to a `PodSink`.
"""

from __future__ import annotations

import ipaddress
import socket
from datetime import datetime
from typing import Any, Iterable, NamedTuple, Protocol

FINISHED_PHASES = frozenset({"Succeeded", "Failed"})


class PodRecord(NamedTuple):
    """Immutable; a NamedTuple because 100k of them are built at start and it is the cheapest to build."""

    uid: str
    namespace: str
    name: str
    hostname: str
    subdomain: str
    ips: tuple[str, ...]
    phase: str
    ready: bool
    host_network: bool
    created: float  # creationTimestamp as Unix seconds; unknown sorts last
    deleting: bool
    # Newest timestamp found in the object (creation, deletion, condition
    # transitions), as Unix seconds: when the API last changed what we serve.
    changed_at: float | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def ownership_rank(self) -> tuple[bool, float, str]:
        """Sort key for who owns a contested name or IP: lowest wins."""
        return (self.deleting, self.created, self.uid)


class PodSink(Protocol):
    """What a pod source feeds; implemented by the registry."""

    def replace_all(self, pods: Iterable[PodRecord]) -> None:
        """The complete current set of this source's pods (list, relist, file load)."""

    def upsert(self, pod: PodRecord) -> None:
        """A pod was added or changed."""

    def delete(self, uid: str) -> None:
        """A pod is gone."""

    def update(self, upserts: Iterable[PodRecord], deletes: Iterable[str]) -> None:
        """Several pods added, changed or gone at once (distinct uids), applied as one change."""

    def set_synced(self, synced: bool) -> None:
        """Whether this source has delivered one complete state yet."""


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _is_utc_seconds(value: Any) -> bool:
    """The API's own form, 2026-11-01T10:00:00Z: for these, text order is time order."""
    return isinstance(value, str) and len(value) == 20 and value[10] == "T" and value[19] == "Z"


def _latest(stamps: list[Any]) -> float | None:
    """The newest of these timestamps, parsing only one when all are in the API's own form."""
    present = [s for s in stamps if s]
    if present and all(_is_utc_seconds(s) for s in present):
        return _timestamp(max(present))
    known = [t for t in map(_timestamp, present) if t is not None]
    return max(known) if known else None


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


def pod_ips(status: dict) -> tuple[str, ...]:
    """`status.podIPs`, falling back to `status.podIP`; invalid entries dropped."""
    found: list[str] = []
    for entry in status.get("podIPs") or ():
        ip = _normal_ip(entry.get("ip") if isinstance(entry, dict) else None)
        if ip and ip not in found:
            found.append(ip)
    if not found:
        ip = _normal_ip(status.get("podIP"))
        if ip:
            found.append(ip)
    return tuple(found)


def strip_pod(obj: Any) -> PodRecord:
    """Reduce a Pod object (parsed JSON/YAML) to a PodRecord.

    Raises ValueError when the object is not a usable Pod.
    """
    if not isinstance(obj, dict):
        raise ValueError("not an object")
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise ValueError("no metadata")
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("no metadata.name")
    namespace = meta.get("namespace") or "default"
    uid = meta.get("uid") or f"{namespace}/{name}"
    if not isinstance(namespace, str) or not isinstance(uid, str):
        raise ValueError("bad metadata.namespace or metadata.uid")

    ready = False
    stamps = [meta.get("creationTimestamp"), meta.get("deletionTimestamp")]
    for cond in status.get("conditions") or ():
        if not isinstance(cond, dict):
            continue
        stamps.append(cond.get("lastTransitionTime"))
        if cond.get("type") == "Ready":
            ready = cond.get("status") == "True"

    hostname = spec.get("hostname")
    subdomain = spec.get("subdomain")
    created = _timestamp(meta.get("creationTimestamp"))
    return PodRecord(
        uid=uid,
        namespace=namespace,
        name=name,
        hostname=hostname.lower() if isinstance(hostname, str) else "",
        subdomain=subdomain.lower() if isinstance(subdomain, str) else "",
        ips=pod_ips(status),
        phase=status.get("phase") if isinstance(status.get("phase"), str) else "",
        ready=ready,
        host_network=spec.get("hostNetwork") is True,
        created=created if created is not None else float("inf"),
        deleting=bool(meta.get("deletionTimestamp")),
        changed_at=_latest(stamps),
    )


def serves_identity(pod: PodRecord, publish_not_ready: bool = True) -> bool:
    """Whether the pod gets a name: hostname+subdomain, an IP, not hostNetwork, not finished."""
    return bool(
        pod.hostname
        and pod.subdomain
        and pod.ips
        and not pod.host_network
        and pod.phase not in FINISHED_PHASES
        and (publish_not_ready or pod.ready)
    )
