"""What /debug/identities shows: every served identity, static entry and PTR with why it is served, the conflicts.

The whole listing is built step by step (`describe_steps` yields between
chunks, so the caller can let queries in between at 100k pods); lookups of
one IP or one name (`lookup_ip`, `lookup_name`) read a few index entries.
A listing is a JSON object of lists, each sorted: identities and static
entries by name, PTRs by address, conflicts by kind and subject.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from ..zone import names
from .claims import Claim
from .conflicts import Conflict, describe_party, subject_text

if TYPE_CHECKING:
    from .ownership import Registry

CHUNK = 2000  # entries built between two yields


async def describe_json(registry: Registry, params: Mapping[str, str]) -> bytes:
    """The /debug/identities body: `?ip=` or `?name=` looks one up; else the whole listing, built and
    serialised a chunk at a time with the event loop let in between (100k pods take seconds of CPU in all)."""
    if "ip" in params:
        return _dumps(lookup_ip(registry, params["ip"]))
    if "name" in params:
        return _dumps(lookup_name(registry, params["name"]))
    steps = describe_steps(registry)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            listing = done.value
            break
        await asyncio.sleep(0)
    parts = [b"{"]
    for index, (key, value) in enumerate(listing.items()):
        parts.append(b"," if index else b"")
        parts.append(orjson.dumps(key) + b": ")
        if isinstance(value, list):
            parts.append(b"[")
            for start in range(0, len(value), CHUNK):
                chunk = orjson.dumps(value[start : start + CHUNK])[1:-1]
                parts.append((b"," if start else b"") + chunk)
                await asyncio.sleep(0)
            parts.append(b"]")
        else:
            parts.append(orjson.dumps(value))
    parts.append(b"}\n")
    return b"".join(parts)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n"


def describe(registry: Registry) -> dict:
    """The whole listing at once (tests, small registries)."""
    steps = describe_steps(registry)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def describe_steps(registry: Registry) -> Generator[None, None, dict]:
    """The whole listing, sorted; yields every CHUNK entries. Entries that change meanwhile are read as they are then."""
    identities = []
    for count, (name, owner) in enumerate(list(registry.identities()), 1):
        identities.append(_identity(registry, name, owner))
        if count % CHUNK == 0:
            yield
    identities.sort(key=lambda entry: entry["name"])
    yield
    static: list[dict[str, Any]] = []
    from_hosts = registry._hosts_static.addresses
    for name, ips in registry._static.addresses.items():
        in_hosts = [ip for ip in ips if ip in from_hosts.get(name, ())]
        for source, held in (("hosts-file", in_hosts), ("records-file", [ip for ip in ips if ip not in in_hosts])):
            if held:
                static.append({"name": names.to_text(name), "ips": held, "source": source})
    static.sort(key=lambda entry: (entry["name"], entry["source"]))
    ptrs = []
    for count, ip in enumerate(_served_ips(registry), 1):
        entry = _ptr(registry, ip)
        if entry is not None:
            ptrs.append(entry)
        if count % CHUNK == 0:
            yield
    ptrs.sort(key=lambda entry: _ip_key(entry["ip"]))
    yield
    conflicts = sorted((_conflict(c) for c in registry.book.items()), key=lambda c: (c["kind"], c["subject"], c["loser"]))
    records = _records(registry)
    return {
        "identities": identities,
        "static": static,
        "records": records,
        "ptrs": ptrs,
        "conflicts": conflicts,
        "stats": registry.stats(),
    }


def _records(registry: Registry) -> list[dict[str, Any]]:
    """Every record beyond A, AAAA and PTR, with where it came from: a pod's named port, or the records file."""
    from ..zone.zonefile import type_text  # dnspython's type names: loaded when /debug asks, not at start

    out: list[dict[str, Any]] = []
    for base, owners in registry._srv.written_items():
        claim = registry._names.owner(base)
        source = f"named ports of pod {claim.pod.key}" if claim is not None else "named ports of the set's pods"
        out += [{"name": names.to_text(owner), "type": "SRV", "source": source} for owner in owners]
    for name, types in registry._records_written.items():
        for rtype in types:
            line = registry._records.lines.get((name, rtype))
            out.append({"name": names.to_text(name), "type": type_text(rtype), "source": f"records file line {line}"})
    for name in sorted(registry._records_blocked):
        out.append({"name": names.to_text(name), "type": "-", "source": "records file, not served: a pod's name, set or SRV holds it"})
    return sorted(out, key=lambda entry: (entry["name"], entry["type"]))


def lookup_ip(registry: Registry, ip: str) -> dict:
    """Who owns one IP: its PTR and why, every claimant, static entries, conflicts."""
    try:
        ip = ipaddress.ip_address(ip.strip()).compressed
    except ValueError:
        return {"error": f"{ip!r} is not an IP address"}
    claimants = [*registry._ips.claimants(ip), *registry._fallback.claimants(ip)]
    return {
        "ip": ip,
        "ptr": _ptr(registry, ip),
        "claimants": sorted((_claimant(registry, c) for c in claimants), key=lambda c: c["rank"]),
        "static": [names.to_text(n) for n in registry._static.ptr_names.get(ip, ())],
        "conflicts": [_conflict(c) for c in registry.book.items() if c.subject == ip],
    }


def lookup_name(registry: Registry, name: str) -> dict:
    """Who owns one name: its owner, the IPs it serves, every claimant, a static entry, conflicts."""
    try:
        wire = names.to_wire(name)
    except ValueError as exc:
        return {"error": str(exc)}
    owner = registry._names.owner(wire)
    return {
        "name": names.to_text(wire),
        "owner": _identity(registry, wire, owner) if owner is not None else None,
        "claimants": sorted((_claimant(registry, c) for c in registry._names.claimants(wire)), key=lambda c: c["rank"]),
        "static_ips": list(registry._static.addresses.get(wire, ())),
        "conflicts": [_conflict(c) for c in registry.book.items() if c.subject == wire],
    }


def _identity(registry: Registry, name: bytes, owner: Claim) -> dict[str, Any]:
    served = [ip for ip in owner.pod.ips if registry._ip_owner(ip) is owner]
    entry: dict[str, Any] = {
        "name": names.to_text(name),
        "ips": served,
        "pod": owner.pod.key,
        "uid": owner.pod.uid,
        "source": owner.source,
    }
    lost = [ip for ip in owner.pod.ips if ip not in served]
    if lost:
        entry["lost_ips"] = lost  # claimed by an older pod: not served under this name
    return entry


def _claimant(registry: Registry, claim: Claim) -> dict[str, Any]:
    rank = claim.rank()
    return {
        "pod": claim.pod.key,
        "uid": claim.pod.uid,
        "source": claim.source,
        "name": names.to_text(claim.name) if claim.name else None,
        "owns_name": claim.name is not None and registry._names.owner(claim.name) is claim,
        "terminating": claim.pod.deleting,
        "rank": [rank[0], rank[1], rank[2], rank[3]],
    }


def _served_ips(registry: Registry) -> list[str]:
    return list(
        {**dict.fromkeys(registry._ips.keys()), **dict.fromkeys(registry._static.ptr_names), **dict.fromkeys(registry._fallback.keys())}
    )


def _ptr(registry: Registry, ip: str) -> dict[str, Any] | None:
    """The PTR an IP gets, and why; None when it gets none (or lies outside every reverse zone)."""
    if registry.store.zone_for(names.reverse_name(ip)) is None:
        return None
    owner = registry._ip_owner(ip)
    if owner is not None:
        return {"ip": ip, "name": names.to_text(owner.name), "reason": "identity", "pod": owner.pod.key}  # type: ignore[arg-type]
    target = registry._ptr_target(ip)
    if target is None:
        return None
    if target in registry._static.ptr_names.get(ip, ()):
        source = "hosts-file" if target in registry._hosts_static.ptr_names.get(ip, ()) else "records-file"
        return {"ip": ip, "name": names.to_text(target), "reason": "static", "source": source}
    fallback = registry._fallback.owner(ip)
    return {"ip": ip, "name": names.to_text(target), "reason": "fallback", "pod": fallback.pod.key if fallback else None}


def _conflict(conflict: Conflict) -> dict[str, str]:
    return {
        "kind": conflict.kind,
        "subject": subject_text(conflict.subject),
        "winner": describe_party(conflict.winner),
        "loser": describe_party(conflict.loser),
    }


def _ip_key(ip: str) -> tuple[int, int]:
    address = ipaddress.ip_address(ip)
    return (address.version, int(address))
