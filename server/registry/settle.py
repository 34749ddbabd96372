"""Settling conflicts after a change: who owns each dirty name and IP, and what the conflict book records.

The registry calls these from its flush (ownership.py), names first: who owns a
name decides whose IPs count. Almost every name and IP has one claimant and no
history of conflict; those are passed over with a few lookups, because this
runs for every watch event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .claims import Claim, Dirty
from .conflicts import STATIC

if TYPE_CHECKING:
    from .ownership import Registry


def settle_names(registry: Registry, dirty: Dirty) -> None:
    """settle_name for every dirty name that may be contested."""
    name_entries, static_names, record_names = registry._names.entries, registry._static.addresses, registry._records.rrsets
    contested = registry.book.has if registry.book else None
    for name in list(dirty.names):
        found = name_entries.get(name)
        if (found is None or type(found) is Claim) and name not in static_names and name not in record_names:
            if contested is None or not contested("name", name):
                continue  # one claimant or none, no static claim, not contested before: nothing to settle
        settle_name(registry, name, dirty)


def settle_name(registry: Registry, name: bytes, dirty: Dirty) -> None:
    """Record the conflicts of a name; when its owner changes, the IPs of both owners are dirty."""
    index = registry._names
    count = index.count(name)
    static_claims = name in registry._static.addresses or name in registry._records.rrsets
    if static_claims:
        dirty.ips.update(registry._static.addresses.get(name, ()))  # their PTR may go to another static name now
    if count <= 1 and not registry.book.has("name", name):
        if count == 1 and static_claims:
            registry.book.settle("name", name, index.owner(name), [STATIC])
        return
    owner = index.owner(name)
    if name in dirty.prior_name_owner and index.is_crowd(name):
        prior = dirty.prior_name_owner[name]
        if owner is not None and prior is owner and registry.book.winner("name", name) is owner:
            for claim in dirty.crowd_claims.get(name, ()):  # only the claims that came or went
                if claim is not owner and index.holds(name, claim):
                    registry.book.add_loser("name", name, owner, claim)
                else:
                    registry.book.remove_loser("name", name, claim)
                dirty.ips.update(claim.pod.ips)
            return
        for party in (prior, owner):
            if party is not None:
                dirty.ips.update(party.pod.ips)
    else:
        for claim in index.claimants(name):
            dirty.ips.update(claim.pod.ips)
    losers: list = [c for c in index.claimants(name) if c is not owner]
    if owner is not None and static_claims:
        losers.append(STATIC)
    registry.book.settle("name", name, owner, losers)


def settle_ips(registry: Registry, dirty: Dirty, names_to_write: set[bytes]) -> dict[str, Claim | None]:
    """settle_ip of every dirty IP, those nobody contests now or before (almost all) without its lookups:
    an IP no pod claims has no owner; one a single pod claims, that owns its name, is that pod's. Either
    way the owner before the change rewrites its name (it may have lost the IP)."""
    ip_entries, name_entries, static_ips, prior = (
        registry._ips.entries,
        registry._names.entries,
        registry._static.names_of_ip,
        dirty.prior_ip_owner,
    )
    contested = registry.book.has if registry.book else None
    owners: dict[str, Claim | None] = {}
    for ip in dirty.ips:
        if ip not in static_ips and (contested is None or not contested("ip", ip)):
            found = ip_entries.get(ip)
            if found is None or (type(found) is Claim and name_entries.get(found.name) is found):  # type: ignore[arg-type]
                before = prior.get(ip)
                if before is not None:
                    names_to_write.add(before.name)  # type: ignore[arg-type]
                if found is not None:
                    names_to_write.add(found.name)  # type: ignore[arg-type]
                owners[ip] = found
                continue
        owners[ip] = settle_ip(registry, ip, dirty, names_to_write)
    return owners


def settle_ip(registry: Registry, ip: str, dirty: Dirty, names_to_write: set[bytes]) -> Claim | None:
    """Record the conflicts of an IP; mark every name whose addresses may change with it. Returns its owner."""
    index = registry._ips
    owner = registry._ip_owner(ip)
    static_names = registry._static.names_of_ip.get(ip)
    if static_names:
        names_to_write.update(static_names)
    if ip in dirty.prior_ip_owner:
        for claim in (dirty.prior_ip_owner[ip], owner):
            if claim is not None:
                names_to_write.add(claim.name)  # type: ignore[arg-type]
    else:
        for claim in index.claimants(ip):
            names_to_write.add(claim.name)  # type: ignore[arg-type]
    if (owner is None or (index.count(ip) <= 1 and not static_names)) and not registry.book.has("ip", ip):
        return owner  # nobody loses it: no pod owns it, or one pod does and no hosts line names it
    losers: list = [c for c in index.claimants(ip) if c is not owner and registry._owns_name(c)] if owner is not None else []
    if owner is not None and ip in registry._static.ptr_names:
        losers.append(STATIC)
    registry.book.settle("ip", ip, owner, losers)
    return owner
