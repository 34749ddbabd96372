"""The registry: decides who owns each name and each IP, and writes the zone store.

Sources hand in pods (per source) and static host entries; the registry keeps
indexes from names and IPs to their claimants, and on every change recomputes
only the names and IPs that change touched: O(changed names) per event.

Ownership, for a name or an IP claimed twice: not terminating before
terminating, then the oldest creationTimestamp, then uid. A pod identity beats
a static entry; a static entry beats a fallback pod-IP PTR. One PTR per IP.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from ..model import PodRecord, StaticEntry, serves_identity
from ..zone import names, wire
from ..zone.store import ZoneStore

log = logging.getLogger("pod_identity_dns.registry")


@dataclass(frozen=True)
class RegistrySettings:
    zone: str  # identities go under this (the first --zone)
    name_template: str = "{hostname}.{subdomain}.{namespace}"
    publish_not_ready: bool = True
    fallback_ptr: bool = False
    cluster_domain: str = "cluster.local"


class _Claim(NamedTuple):
    """What one pod asks for: a name (identity) or only a fallback PTR."""

    source: str
    pod: PodRecord
    name: bytes | None
    set_name: bytes | None
    fallback: bool  # no identity, but may get a CoreDNS-style pod-IP PTR


# A NamedTuple's own __new__ is a Python function; this builds one in C (100k claims at start).
_new_claim = tuple.__new__


class _Sink:
    """PodSink adapter: one source's store of the registry."""

    def __init__(self, registry: Registry, source: str):
        self._registry, self._source = registry, source

    def replace_all(self, pods: Iterable[PodRecord]) -> None:
        self._registry.replace_pods(self._source, pods)

    def upsert(self, pod: PodRecord) -> None:
        self._registry.update_pods(self._source, [pod], [])

    def delete(self, uid: str) -> None:
        self._registry.update_pods(self._source, [], [uid])

    def update(self, upserts: Iterable[PodRecord], deletes: Iterable[str]) -> None:
        self._registry.update_pods(self._source, upserts, deletes)

    def set_synced(self, synced: bool) -> None:
        self._registry.set_synced(self._source, synced)


class Registry:
    def __init__(self, store: ZoneStore, settings: RegistrySettings):
        self.store = store
        self.settings = settings
        self._zone_suffix = settings.zone.strip().rstrip(".").lower()
        self._sets_enabled = settings.name_template.startswith("{hostname}.")
        # The default template's names are built from a cached suffix per set.
        self._plain_template = settings.name_template == "{hostname}.{subdomain}.{namespace}"
        self._suffixes: dict[tuple[str, str], bytes] = {}
        self._claims: dict[str, _Claim] = {}  # uid -> claim, for every pod of every source
        self._synced: dict[str, bool] = {}
        # Claim indexes map to the one claimant's uid, or to a tuple of two or
        # more: almost always one, and a bare string costs nothing extra. A
        # name's claimants are kept owner first once settled.
        self._name_claims: dict[bytes, str | tuple[str, ...]] = {}
        self._ip_claims: dict[str, str | tuple[str, ...]] = {}
        # IPs claimed by two pods of one set, by set: only those sets' joins need de-duplicating.
        self._shared_by_set: dict[bytes, set[str]] = {}
        self._shared_ip_sets: dict[str, tuple[bytes, ...]] = {}
        self._fallback_claims: dict[str, str | tuple[str, ...]] = {}
        # set name -> its members' encoded A and AAAA RRsets: a set's records are
        # a join of its members', never encoded again.
        self._set_members: dict[bytes, _SetParts] = {}
        self._static_names: dict[bytes, list[str]] = {}
        self._static_ptr: dict[str, tuple[bytes, int]] = {}
        self._ptr_count = 0
        self.conflicts: dict[tuple[str, bytes | str, str, str], None] = {}
        self._conflicts_by_subject: dict[tuple[str, str], set[tuple[str, str, str, str]]] = {}
        self._warned_names: set[str] = set()

    # -- sources -------------------------------------------------------

    def sink(self, source: str) -> _Sink:
        """A PodSink for one source; the store is synced once every source is."""
        self._synced.setdefault(source, False)
        self._refresh_synced()
        return _Sink(self, source)

    def set_synced(self, source: str, synced: bool) -> None:
        self._synced[source] = synced
        self._refresh_synced()

    def _refresh_synced(self) -> None:
        self.store.synced = all(self._synced.values())

    def replace_pods(self, source: str, pods: Iterable[PodRecord]) -> None:
        """The complete state of one source: apply only the difference."""
        fresh = {pod.uid: pod for pod in pods}
        gone = [uid for uid, claim in self._claims.items() if claim.source == source and uid not in fresh]
        changed = [pod for uid, pod in fresh.items() if self.pod(uid) != pod]
        self.update_pods(source, changed, gone)

    def pod(self, uid: str) -> PodRecord | None:
        """The record the registry holds for a pod (for diffs and tests)."""
        claim = self._claims.get(uid)
        return claim.pod if claim is not None else None

    def pods_of(self, source: str) -> list[PodRecord]:
        return [claim.pod for claim in self._claims.values() if claim.source == source]

    def update_pods(self, source: str, upserts: Iterable[PodRecord], deletes: Iterable[str]) -> None:
        upserts, deletes = list(upserts), list(deletes)
        with _bulk(len(upserts) + len(deletes)):
            dirty = _Dirty()
            for uid in deletes:
                claim = self._claims.get(uid)
                if claim is not None and claim.source == source:
                    self._unclaim(uid, dirty)
            for pod in upserts:
                before = self._claims.get(pod.uid)
                if before is not None:
                    if before.pod.serves_the_same(pod):
                        # Status churn (condition times) that serves nothing new.
                        self._claims[pod.uid] = before._replace(source=source, pod=pod)
                        continue
                    if self._reclaim(source, pod, before, dirty):
                        continue
                    self._unclaim(pod.uid, dirty)
                self._claim(source, pod, dirty)
            self._flush(dirty)

    def replace_static(self, entries: Iterable[StaticEntry]) -> None:
        """The complete set of static host entries (hosts file)."""
        dirty = _Dirty()
        old_names, old_ptr = self._static_names, self._static_ptr
        self._static_names, self._static_ptr = {}, {}
        for entry in entries:
            for text in entry.names:
                try:
                    name = names.to_wire(text)
                except ValueError:
                    continue
                if self.store.zone_for(name) is None:
                    log.warning("static entry %s (line %d) is outside every --zone: no forward answer", text, entry.line)
                    continue
                ips = self._static_names.setdefault(name, [])
                if entry.ip not in ips:
                    ips.append(entry.ip)
            if entry.ip not in self._static_ptr and entry.names:
                try:
                    self._static_ptr[entry.ip] = (names.to_wire(entry.names[0]), entry.line)
                except ValueError:
                    pass
        for name in old_names.keys() | self._static_names.keys():
            if old_names.get(name) != self._static_names.get(name):
                dirty.names.add(name)
        for ip in old_ptr.keys() | self._static_ptr.keys():
            if old_ptr.get(ip) != self._static_ptr.get(ip):
                dirty.ips.add(ip)
        self._flush(dirty)

    # -- claims --------------------------------------------------------

    def _identity_name(self, pod: PodRecord) -> tuple[bytes, bytes] | None:
        """A pod's name and that name's parent (its set's name, shared by all members)."""
        if self._plain_template:
            suffix = self._suffixes.get((pod.subdomain, pod.namespace))
            if suffix is None:
                suffix = self._set_suffix(pod.subdomain, pod.namespace)
            label = pod.hostname.lower()
            # What to_wire would make of the whole text, without splitting it again.
            if suffix and "." not in label and label.isascii() and 0 < len(label) <= names.MAX_LABEL and label.strip() == label:
                if len(label) + len(suffix) < names.MAX_NAME:
                    return bytes((len(label),)) + label.encode() + suffix, suffix
        text = self.settings.name_template.format(hostname=pod.hostname, subdomain=pod.subdomain, namespace=pod.namespace, pod=pod.name)
        try:
            name = names.to_wire(f"{text}.{self._zone_suffix}")
            return name, names.parent(name)
        except ValueError as exc:
            if pod.uid not in self._warned_names:
                self._warned_names.add(pod.uid)
                log.warning("pod %s gets no name: %s", pod.key, exc)
            return None

    def _set_suffix(self, subdomain: str, namespace: str) -> bytes:
        """The wire form of `subdomain.namespace.zone`, cached; b"" when it is no valid name."""
        if len(self._suffixes) >= SUFFIX_CACHE_LIMIT:
            self._suffixes.clear()
        try:
            suffix = names.to_wire(f"{subdomain}.{namespace}.{self._zone_suffix}")
        except ValueError:
            suffix = b""
        if subdomain != subdomain.lstrip():
            suffix = b""  # to_wire would strip what is inside the whole name: leave it to the text path
        self._suffixes[(subdomain, namespace)] = suffix
        return suffix

    def _claim(self, source: str, pod: PodRecord, dirty: _Dirty) -> None:
        """A pod that is new, or whose name changed (an unchanged name is `_reclaim`'s)."""
        name = set_name = None
        fallback = False
        shared: list[str] = []  # IPs another pod claims too
        if serves_identity(pod, self.settings.publish_not_ready):
            name, parent = self._identity_name(pod) or (None, None)
        if name is not None:
            if self._sets_enabled and parent not in self.store.zones:
                set_name = parent
                parts = self._set_members.get(set_name) or self._set_members.setdefault(set_name, _SetParts())
                parts.a.setdefault(name, b"")
                dirty.names.add(set_name)
            uid = pod.uid
            rivals = self._name_claims.get(name)
            if rivals is None:
                self._name_claims[name] = uid
            else:
                _add(self._name_claims, name, uid)
                self._rivals_dirty(rivals, dirty)
            dirty.names.add(name)
            ip_claims = self._ip_claims
            for ip in pod.ips:
                if ip in ip_claims:
                    _add(ip_claims, ip, uid)
                    shared.append(ip)  # claimed before: now maybe by two pods of one set
                else:
                    ip_claims[ip] = uid
                dirty.ips.add(ip)
        elif (
            self.settings.fallback_ptr
            and not (pod.hostname and pod.subdomain)
            and pod.ips
            and not pod.host_network
            and pod.phase not in ("Succeeded", "Failed")
        ):
            fallback = True
            for ip in pod.ips:
                _add(self._fallback_claims, ip, pod.uid)
                dirty.ips.add(ip)
        self._claims[pod.uid] = _new_claim(_Claim, (source, pod, name, set_name, fallback))
        for ip in shared:
            self._note_shared(ip)

    def _reclaim(self, source: str, pod: PodRecord, before: _Claim, dirty: _Dirty) -> bool:
        """A pod that keeps its name (an IP or rank change): move only its IP claims.

        False when the change is more than that, for the full unclaim and claim.
        """
        name = before.name
        if name is None or not before.pod.same_naming(pod) or not serves_identity(pod, self.settings.publish_not_ready):
            return False
        uid = pod.uid
        old_ips, new_ips = before.pod.ips, pod.ips
        self._claims[uid] = _new_claim(_Claim, (source, pod, name, before.set_name, False))
        for ip in old_ips:
            if ip not in new_ips:
                _discard(self._ip_claims, ip, uid)
                self._note_shared(ip)
                dirty.ips.add(ip)
        for ip in new_ips:
            if ip not in old_ips:
                _add(self._ip_claims, ip, uid)
                self._note_shared(ip)
            dirty.ips.add(ip)
        dirty.names.add(name)
        if before.set_name is not None:
            dirty.names.add(before.set_name)
        rivals = self._name_claims.get(name)
        if type(rivals) is tuple:  # contested: a new rank may change who owns it
            self._rivals_dirty(rivals, dirty)
        return True

    def _unclaim(self, uid: str, dirty: _Dirty) -> None:
        claim = self._claims.pop(uid, None)
        if claim is None:
            return
        if claim.name is not None:
            _discard(self._name_claims, claim.name, uid)
            dirty.names.add(claim.name)
            rivals = self._name_claims.get(claim.name)
            if rivals is not None:
                self._rivals_dirty(rivals, dirty)
            for ip in claim.pod.ips:
                _discard(self._ip_claims, ip, uid)
                self._note_shared(ip)
                dirty.ips.add(ip)
            if claim.set_name is not None:
                dirty.names.add(claim.set_name)
        if claim.fallback:
            for ip in claim.pod.ips:
                _discard(self._fallback_claims, ip, uid)
                dirty.ips.add(ip)

    def _rivals_dirty(self, rivals: str | tuple[str, ...], dirty: _Dirty) -> None:
        """Other claimants of a name whose claims changed: who owns it may change, so may their PTRs."""
        for uid in _members(rivals):
            dirty.ips.update(self._claims[uid].pod.ips)

    def _owner(self, name: bytes) -> str | None:
        """The pod that owns a (settled) name: its only claimant, or the first."""
        claimants = self._name_claims.get(name)
        return claimants if claimants is None or type(claimants) is str else claimants[0]

    def _note_shared(self, ip: str) -> None:
        """Track whether two pods of one set claim `ip` (after its claims changed)."""
        for set_name in self._shared_ip_sets.pop(ip, ()):
            shared = self._shared_by_set[set_name]
            shared.discard(ip)
            if not shared:
                del self._shared_by_set[set_name]
        claimants = self._ip_claims.get(ip)
        if claimants is None or type(claimants) is str:
            return
        seen: set[bytes] = set()
        sets: set[bytes] = set()
        for uid in claimants:
            set_name = self._claims[uid].set_name
            if set_name is not None:
                (sets if set_name in seen else seen).add(set_name)
        if sets:
            self._shared_ip_sets[ip] = tuple(sets)
            for set_name in sets:
                self._shared_by_set.setdefault(set_name, set()).add(ip)

    def _rank(self, uid: str) -> tuple[bool, float, str]:
        return self._claims[uid].pod.ownership_rank()

    # -- recomputing what changed ----------------------------------------

    def _flush(self, dirty: _Dirty) -> None:
        # Names first: who owns a name decides whose IPs may carry a PTR.
        # Members before sets: a set's records are joined from its members'.
        claims, statics, book, members = self._name_claims, self._static_names, self._conflicts_by_subject, self._set_members
        set_names = []
        for name in dirty.names:
            if type(claims.get(name)) is tuple or name in statics or (book and ("name", name) in book):
                self._settle_name(name)  # contested, now or before: otherwise there is nothing to settle
            if name in members:
                set_names.append(name)
            else:
                self._write_forward(name)
        for name in set_names:
            self._write_forward(name)
        for ip in dirty.ips:
            self._settle_ip(ip)
        self.store.commit()

    def _settle_name(self, name: bytes) -> None:
        """Order a contested name's claimants, owner first, and record the conflict."""
        claimants = self._name_claims.get(name)
        if type(claimants) is tuple:
            claimants = self._name_claims[name] = tuple(sorted(claimants, key=self._rank))
            owner, losers = claimants[0], set(claimants[1:])
        else:
            owner, losers = claimants, set()
        if owner is not None and name in self._static_names:
            losers.add("static")
        self._set_conflicts("name", name, owner, losers)

    def _write_forward(self, name: bytes) -> None:
        """A/AAAA of a name: its owner pod's IPs, else its static entry, else the union of its set.

        Every name here lies in a zone: identities under the first --zone, static
        names filtered when read, sets the parents of identities.
        """
        owner = self._owner(name)
        if owner is None and name not in self._static_names and name in self._set_members:
            self._write_set(name)
            return
        if owner is not None:
            claim = self._claims[owner]
            ips, set_name = claim.pod.ips, claim.set_name
        else:
            ips, set_name = self._static_names.get(name, ()), names.parent(name)
        a_body, a_count, aaaa_body, aaaa_count = self.store.encode_addresses(ips)
        self.store.set_addresses(name, a_body, a_count, aaaa_body, aaaa_count)
        parts = self._set_members.get(set_name) if set_name is not None else None
        if parts is None or name not in parts.a:
            return
        if owner is not None:
            parts.a[name] = a_body
            if aaaa_body:
                parts.aaaa[name] = aaaa_body
            else:
                parts.aaaa.pop(name, None)
        else:
            # Dropped only now, not when unclaimed, so a member that is replaced in one
            # batch keeps its place and the set's bytes do not change for nothing.
            del parts.a[name]
            parts.aaaa.pop(name, None)
            if not parts.a:
                del self._set_members[set_name]

    def _write_set(self, name: bytes) -> None:
        parts = self._set_members[name]
        for bodies, rtype, size in ((parts.a, wire.A, 16), (parts.aaaa, wire.AAAA, 28)):
            body = b"".join(bodies.values())
            if name in self._shared_by_set:
                # Two pods of this set claim one IP (a conflict): list it once.
                records = dict.fromkeys(body[i : i + size] for i in range(0, len(body), size))
                body = b"".join(records)
            self.store.set_rrset_body(name, rtype, body, len(body) // size)

    def _settle_ip(self, ip: str) -> None:
        self._ptr_count += self.store.set_ptr(names.reverse_name(ip), self._ptr_target(ip))

    def _ptr_target(self, ip: str) -> bytes | None:
        """The name an IP's PTR gives (None for no PTR), recording conflicts over the IP."""
        claimants = self._ip_claims.get(ip)
        book = self._conflicts_by_subject
        if type(claimants) is str and ip not in self._static_ptr and not (book and ("ip", ip) in book):
            name = self._claims[claimants].name
            if self._name_claims.get(name) == claimants:
                return name  # the common case: one pod, the only claimant of its name, no conflict now or before
        owners = [uid for uid in _members(claimants) if self._owner(self._claims[uid].name) == uid]
        if owners:
            owner = _winner(owners, self._rank)
            losers = {uid for uid in owners if uid != owner}
            if ip in self._static_ptr:
                losers.add("static")
            self._set_conflicts("ip", ip, owner, losers)
            return self._claims[owner].name
        self._set_conflicts("ip", ip, None, set())
        if ip in self._static_ptr:
            return self._static_ptr[ip][0]
        if ip in self._fallback_claims:
            pod = self._claims[min(_members(self._fallback_claims[ip]), key=self._rank)].pod
            try:
                return names.to_wire(names.pod_ip_name(ip, pod.namespace, self.settings.cluster_domain))
            except ValueError:
                return None
        return None

    # -- conflicts and introspection -------------------------------------

    def _describe(self, uid: str | None) -> str:
        if uid is None:
            return "-"
        if uid == "static":
            return "static host entry"
        claim = self._claims.get(uid)
        return f"pod {claim.pod.key} (uid {uid})" if claim else uid

    def _set_conflicts(self, kind: str, subject: bytes | str, winner: str | None, losers: set[str]) -> None:
        """Record the current losers for one name (wire bytes) or IP; log each new pair once."""
        if not losers and (kind, subject) not in self._conflicts_by_subject:
            return
        stale = [k for k in self._conflicts_for(kind, subject) if k[2] != winner or k[3] not in losers]
        for key in stale:
            del self.conflicts[key]
        if winner is None:
            return
        for loser in sorted(losers):
            key = (kind, subject, winner, loser)
            if key not in self.conflicts:
                self.conflicts[key] = None
                self._conflicts_by_subject.setdefault((kind, subject), set()).add(key)
                log.warning(
                    "conflict on %s %s: %s keeps it, %s loses it",
                    kind,
                    _subject_text(subject),
                    self._describe(winner),
                    self._describe(loser),
                )

    def _conflicts_for(self, kind: str, subject: str) -> list[tuple[str, str, str, str]]:
        keys = self._conflicts_by_subject.get((kind, subject))
        if not keys:
            return []
        live = [k for k in keys if k in self.conflicts]
        keys.intersection_update(live)
        return live

    def stats(self) -> dict[str, int]:
        return {
            "forward_names": len(self._name_claims),
            "ptrs": self._ptr_count,
            "static_entries": len(self._static_names),
            "conflicts": len(self.conflicts),
        }

    def describe(self) -> dict:
        """Every served identity name and PTR owner, and current conflicts (for /debug)."""
        identities = []
        for name, uid in sorted((name, self._owner(name)) for name in self._name_claims):
            pod = self._claims[uid].pod
            identities.append(
                {"name": names.to_text(name), "ips": list(pod.ips), "pod": pod.key, "uid": uid, "source": self._claims[uid].source}
            )
        statics = [{"name": names.to_text(name), "ips": ips, "source": "hosts-file"} for name, ips in sorted(self._static_names.items())]
        conflicts = [
            {"kind": kind, "subject": _subject_text(subject), "winner": self._describe(w), "loser": self._describe(loser)}
            for kind, subject, w, loser in self.conflicts
        ]
        return {"identities": identities, "static": statics, "conflicts": conflicts, "stats": self.stats()}


BULK_CHANGES = 1000
SUFFIX_CACHE_LIMIT = 100_000


@contextlib.contextmanager
def _bulk(changes: int):
    """Pause the garbage collector for large batches (an initial list, a relist).

    Bulk loads only allocate long-lived objects; collections during them find
    nothing yet cost most of the time. Afterwards the survivors are frozen so
    later collections need not scan them again.
    """
    if changes < BULK_CHANGES or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


class _SetParts:
    """One set's members with their encoded A RRsets (every member, so also the
    membership) and AAAA RRsets (dual-stack members only); joined in C."""

    __slots__ = ("a", "aaaa")

    def __init__(self) -> None:
        self.a: dict[bytes, bytes] = {}
        self.aaaa: dict[bytes, bytes] = {}


class _Dirty:
    __slots__ = ("ips", "names")

    def __init__(self) -> None:
        self.names: set[bytes] = set()
        self.ips: set[str] = set()


def _winner(claimants, rank) -> str | None:
    """The owner among claimants (lowest rank); None for none. One claimant, no sorting."""
    if len(claimants) == 1:
        return claimants[0]
    return min(claimants, key=rank) if claimants else None


def _subject_text(subject: bytes | str) -> str:
    return names.to_text(subject) if isinstance(subject, bytes) else subject


def _members(found: str | tuple[str, ...] | None) -> tuple[str, ...]:
    """A claim index entry as a tuple."""
    if found is None:
        return ()
    return (found,) if type(found) is str else found


def _add(index: dict, key, value: str) -> None:
    found = index.get(key)
    if found is None:
        index[key] = value
    elif type(found) is str:
        if found != value:
            index[key] = (found, value)
    elif value not in found:
        index[key] = found + (value,)


def _discard(index: dict, key, value: str) -> None:
    found = index.get(key)
    if found is None:
        return
    if type(found) is str:
        if found == value:
            del index[key]
    elif value in found:
        rest = tuple(m for m in found if m != value)
        index[key] = rest[0] if len(rest) == 1 else rest
