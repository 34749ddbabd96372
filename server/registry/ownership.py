"""The registry: decides who owns each name and each IP, and writes the zone store.

Sources hand in pods (per source) and static host entries; the registry keeps
indexes from names and IPs to their claims, and on every change recomputes
only the names and IPs that change touched: O(changed names) per event.

Ownership, for a name or an IP claimed twice: not terminating before
terminating, then the oldest creationTimestamp, then uid. A pod identity beats
a static entry; a static entry beats a fallback pod-IP PTR. Forward-confirmed
always: an IP's one PTR names its owner, and only its owner's name holds it;
a name that loses its last address is not served.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..model import PodRecord, StaticEntry, StaticRecord, serves_identity
from ..zone import names
from ..zone.store import ZoneStore
from . import steps
from .claims import Claim, ClaimIndex, Dirty
from .conflicts import ConflictBook
from .naming import Naming
from .records import RecordsTable, replace_records, write_records
from .sets import SetJoins
from .settle import settle_ips, settle_names
from .sink import RegistrySink, bulk
from .srv import SrvRecords
from .statics import StaticTable


@dataclass(frozen=True)
class RegistrySettings:
    zone: str  # identities go under this (the first --zone)
    name_template: str = "{hostname}.{subdomain}.{namespace}"
    publish_not_ready: bool = True
    fallback_ptr: bool = False
    cluster_domain: str = "cluster.local"
    srv_records: str = "all"  # SRV per named port: "all" (sets and members), "sets", "off"


class Registry:
    def __init__(self, store: ZoneStore, settings: RegistrySettings):
        self.store = store
        self.settings = settings
        self.naming = Naming(settings.zone, settings.name_template, store.is_reserved, store.zones.__contains__, store.in_forward_zone)
        self.book = ConflictBook()
        self._claims: dict[str, dict[str, Claim]] = {}  # source -> uid -> claim
        self._synced: dict[str, bool] = {}
        self._names: ClaimIndex[bytes] = ClaimIndex()  # identity name -> claims
        self._ips: ClaimIndex[str] = ClaimIndex()  # IP -> identity claims
        self._fallback: ClaimIndex[str] = ClaimIndex()  # IP -> claims of pods without an identity
        self._sets = SetJoins()
        self._srv = SrvRecords(store, settings.srv_records)
        self._static = StaticTable()  # the hosts file's entries and the records file's addresses and PTRs
        self._hosts_static = StaticTable()
        self._records = RecordsTable()
        self._records_written: dict[bytes, tuple[int, ...]] = {}  # name -> the record-file types written there
        self._records_blocked: set[bytes] = set()  # names whose records a pod (or set, or SRV) keeps from serving
        self._ptr_count = 0
        self._versions: dict[str, int] = {}  # source -> its last resourceVersion
        self._version: int | None = None  # of the change being applied

    # -- sources -------------------------------------------------------

    def sink(self, source: str) -> RegistrySink:
        """A PodSink for one source; the store is synced once every source is."""
        self._synced.setdefault(source, False)
        self._claims.setdefault(source, {})
        self._refresh_synced()
        return RegistrySink(self, source)

    def set_synced(self, source: str, synced: bool) -> None:
        self._synced[source] = synced
        self._refresh_synced()

    def _refresh_synced(self) -> None:
        was = self.store.synced
        self.store.synced = all(self._synced.values())
        if self.store.synced and not was:
            self.store.commit(max(self._versions.values(), default=None))  # every zone's first serial

    def _note_version(self, source: str, version: str | None) -> int | None:
        """A resourceVersion as a number (Kubernetes 1.35+ makes them comparable integers), remembered per source."""
        if version is None or not version.isdigit():
            return None
        number = self._versions[source] = int(version)
        return number

    def replace_pods(self, source: str, pods: Iterable[PodRecord], version: str | None = None) -> None:
        """The complete state of one source: apply only the difference."""
        changed, gone = steps.difference(self, source, pods)
        self.update_pods(source, changed, gone, version)

    def pod(self, uid: str, source: str | None = None) -> PodRecord | None:
        """The record the registry holds for a pod (for diffs and tests)."""
        for held in [self._claims.get(source, {})] if source is not None else self._claims.values():
            claim = held.get(uid)
            if claim is not None:
                return claim.pod
        return None

    def pods_of(self, source: str) -> list[PodRecord]:
        return [claim.pod for claim in self._claims.get(source, {}).values()]

    def update_pods(
        self, source: str, upserts: Iterable[PodRecord], deletes: Iterable[str], version: str | None = None, commit: bool = True
    ) -> None:
        """Apply one change of one source; `commit=False` writes the records but leaves the serials to a later commit."""
        upserts, deletes = list(upserts), list(deletes)
        self._version = self._note_version(source, version)
        held = self._claims.setdefault(source, {})
        with bulk(len(upserts) + len(deletes)):
            dirty = Dirty()
            for uid in deletes:
                claim = held.pop(uid, None)
                if claim is not None:
                    self._unclaim(claim, dirty)
            for pod in upserts:
                before = held.get(pod.uid)
                if before is not None:
                    if before.pod.serves_the_same(pod):
                        before.pod = pod  # status churn (condition times) that serves nothing new
                        continue
                    if self._reclaim(before, pod, dirty):
                        continue
                    self._unclaim(before, dirty)
                held[pod.uid] = self._claim(source, pod, dirty)
            self._flush(dirty, commit)

    def replace_pods_steps(self, source: str, pods: Iterable[PodRecord], version: str | None = None) -> Iterator[None]:
        """replace_pods a slice at a time (see steps.py)."""
        return steps.replace_pods_steps(self, source, pods, version)

    def replace_static_steps(self, entries: Iterable[StaticEntry]) -> Iterator[None]:
        """replace_static a slice at a time (see steps.py)."""
        return steps.replace_static_steps(self, entries)

    def replace_records(self, records: Iterable[StaticRecord]) -> None:
        """The complete set of static records (the records file; see records.py)."""
        replace_records(self, records)

    def replace_static(self, entries: Iterable[StaticEntry]) -> None:
        """The complete set of static host entries (hosts file)."""
        for _ in self.replace_static_steps(entries):
            pass

    # -- claims --------------------------------------------------------

    def _claim(self, source: str, pod: PodRecord, dirty: Dirty) -> Claim:
        """A pod that is new, or whose name changed (an unchanged name is `_reclaim`'s)."""
        found = self.naming.identity(pod) if serves_identity(pod, self.settings.publish_not_ready) else None
        if found is None:
            claim = Claim(source, pod, None, None, self._wants_fallback(pod))
            for ip in pod.ips if claim.fallback else ():
                self._fallback.add(ip, claim)
                dirty.ips.add(ip)
            return claim
        name, set_name = found
        claim = Claim(source, pod, name, set_name, False)
        if set_name is not None:
            self._sets.reserve(set_name, name)
            dirty.names.add(set_name)
        # A name or IP nobody claimed before (a first load is all of them) is claimed in one step.
        if not self._names.add_first(name, claim):
            self._touch_name(name, dirty)
            self._names.add(name, claim)
        self._note_crowd_change(name, claim, dirty)
        dirty.names.add(name)
        for ip in pod.ips:
            if not self._ips.add_first(ip, claim):
                self._touch_ips((ip,), dirty)
                self._ips.add(ip, claim)
            dirty.ips.add(ip)
        return claim

    def _wants_fallback(self, pod: PodRecord) -> bool:
        return bool(
            self.settings.fallback_ptr
            and not (pod.hostname and pod.subdomain)
            and pod.ips
            and not pod.host_network
            and pod.phase not in ("Succeeded", "Failed")
        )

    def _reclaim(self, claim: Claim, pod: PodRecord, dirty: Dirty) -> bool:
        """A pod that keeps its name (an IP or rank change): update its claim in place.

        False when the change is more than that, for the full unclaim and claim.
        """
        name = claim.name
        if name is None or not claim.pod.same_naming(pod) or not serves_identity(pod, self.settings.publish_not_ready):
            return False
        old_ips, new_ips = claim.pod.ips, pod.ips
        reranked = claim.pod.ownership_rank() != pod.ownership_rank()
        self._touch_name(name, dirty)  # its owner before the change noted: settling a crowd costs only what changed
        self._touch_ips(old_ips + new_ips, dirty)
        claim.pod = pod
        for ip in old_ips:
            if ip not in new_ips:
                self._ips.discard(ip, claim)
            dirty.ips.add(ip)
        for ip in new_ips:
            if ip not in old_ips:
                self._ips.add(ip, claim)
            elif reranked:
                self._ips.rerank(ip, claim)
            dirty.ips.add(ip)
        if reranked:
            self._names.rerank(name, claim)
            self._note_crowd_change(name, claim, dirty)
        dirty.names.add(name)
        if claim.set_name is not None:
            dirty.names.add(claim.set_name)
        return True

    def _unclaim(self, claim: Claim, dirty: Dirty) -> None:
        name = claim.name
        if name is not None:
            self._touch_name(name, dirty)
            self._names.discard(name, claim)
            self._note_crowd_change(name, claim, dirty)
            dirty.names.add(name)
            self._touch_ips(claim.pod.ips, dirty)
            for ip in claim.pod.ips:
                self._ips.discard(ip, claim)
                dirty.ips.add(ip)
            if claim.set_name is not None:
                dirty.names.add(claim.set_name)
        if claim.fallback:
            for ip in claim.pod.ips:
                self._fallback.discard(ip, claim)
                dirty.ips.add(ip)

    def _touch_name(self, name: bytes, dirty: Dirty) -> None:
        """Before a claimed name's claims first change in a change: remember its owner then. Settling a crowd
        needs it (see settle.py), and a name may become a crowd within the change, so every claimed name's."""
        prior = dirty.prior_name_owner
        if name not in prior:
            found = self._names.entries.get(name)
            if found is not None:
                prior[name] = found if type(found) is Claim else self._names.owner(name)

    def _touch_ips(self, ips: Iterable[str], dirty: Dirty) -> None:
        """_touch_name for IPs (one call for a pod's IPs: this runs for every event)."""
        entries, prior = self._ips.entries, dirty.prior_ip_owner
        for ip in ips:
            if ip not in prior and ip in entries:
                prior[ip] = self._ip_owner(ip)

    def _note_crowd_change(self, name: bytes, claim: Claim, dirty: Dirty) -> None:
        if name in dirty.prior_name_owner:
            dirty.crowd_claims.setdefault(name, []).append(claim)

    # -- who owns what ---------------------------------------------------

    def _owns_name(self, claim: Claim) -> bool:
        return self._names.owner(claim.name) is claim  # type: ignore[arg-type]

    def _ip_owner(self, ip: str) -> Claim | None:
        """The identity that owns an IP: the lowest-ranked claimant among those that own their names."""
        sole = self._ips.sole(ip)
        if sole is not None:
            return sole if self._names.sole(sole.name) is sole or self._owns_name(sole) else None  # type: ignore[arg-type]
        return self._ips.owner_where(ip, self._owns_name)

    def _confirms(self, name: bytes, ip: str) -> bool:
        """Whether a static PTR to `name` is forward-confirmed: a name outside the forward zones, or one whose
        static addresses hold `ip` (a records-file PTR to an in-zone name without them is not served)."""
        held = self._static.addresses.get(name)
        return ip in held if held is not None else not self.store.in_forward_zone(name)

    def _static_owns_name(self, name: bytes) -> bool:
        return name not in self._names  # any pod claiming a name beats a static entry

    # -- recomputing what changed ----------------------------------------

    def _flush(self, dirty: Dirty, commit: bool = True) -> None:
        """Settle names, then IPs (who owns a name decides whose IPs count), then write records."""
        settle_names(self, dirty)
        names_to_write = set(dirty.names)
        # Who owns each IP is settled here and stays so until the flush ends: the PTRs reuse it.
        ip_owners = settle_ips(self, dirty, names_to_write)
        # Members before sets: a set's records are joined from its members'.
        sets = {name for name in names_to_write if name in self._sets and self._names.count(name) == 0}
        for name in names_to_write:
            if name not in sets:
                self._write_forward(name, sets)
        for name in sets:
            self._write_forward(name, None)
        rrsets, written = self._records.rrsets, self._records_written
        for name in names_to_write:
            if name in rrsets or name in written:
                write_records(self, name)
        set_ptr, reverse_name, ptr_target, ptrs = self.store.set_ptr, names.reverse_name, self._ptr_target, 0
        static_ptrs, fallbacks = self._static.ptr_names, self._fallback.entries
        for ip, owner in ip_owners.items():
            if owner is not None:
                target = owner.name
            else:  # a static name or a fallback PTR, if the IP has either
                target = ptr_target(ip, None) if ip in static_ptrs or ip in fallbacks else None
            ptrs += set_ptr(reverse_name(ip), target)
        self._ptr_count += ptrs
        if commit:
            self.store.commit(self._version)
            self._version = None
        self.book.end_change()

    def _write_forward(self, name: bytes, sets: set[bytes] | None) -> None:
        """A/AAAA of a name: its owner pod's IPs that it owns, else its static IPs no pod owns, else its set's join.

        Adds to `sets` the sets whose joins this may have changed (to be written after their members).
        """
        found = self._names.entries.get(name)
        owner = found if found is None or type(found) is Claim else self._names.owner(name)
        store = self.store
        if owner is None:
            static_ips = self._static.addresses.get(name)
            if static_ips is None:
                members = self._sets.get(name)
                if members is not None:
                    a, aaaa = members.a_body(), members.aaaa_body()
                    store.set_rrset_body(name, 1, a, len(a) // 16)
                    store.set_rrset_body(name, 28, aaaa, len(aaaa) // 28)
                    self._srv.set(name, members.members)
                    return
                ips: tuple[str, ...] | list[str] = ()
            else:
                ips = [ip for ip in static_ips if self._ip_owner(ip) is None]
            self._srv.forget(name)  # no pod here any more: no SRV below it
            store.set_addresses(name, *store.encode_addresses(ips))
            parent = self._sets.set_of_override.pop(name, None) or names.parent(name)
            if self.naming.sets_enabled and parent in self._sets:
                self._sets.drop(parent, name)
                if sets is not None:
                    sets.add(parent)
            return
        # This runs for every pod of every event: attributes are read once.
        pod, set_name, joins = owner.pod, owner.set_name, self._sets
        ips = pod.ips
        if not (len(ips) == 1 and self._ips.entries.get(ips[0]) is owner):  # the common case: one IP, one claimant
            ips = [ip for ip in ips if self._ip_owner(ip) is owner]
        a_body, a_count, aaaa_body, aaaa_count = store.encode_addresses(ips)
        store.set_addresses(name, a_body, a_count, aaaa_body, aaaa_count)
        if pod.ports or self._srv.has_member(name):  # a name with no address gets no SRV
            self._srv.member(name, pod.ports, a_body + aaaa_body)
        overrides = joins.set_of_override
        earlier = overrides.get(name) if overrides else None
        if earlier is not None and earlier != set_name:  # an override name whose new owner is of another set
            del overrides[name]
            joins.drop(earlier, name)
            if sets is not None:
                sets.add(earlier)
        if set_name is not None:
            joins.update(set_name, name, a_body, aaaa_body)
            if set_name != name[name[0] + 1 :]:  # not the name's parent: a hostnameOverride's
                overrides[name] = set_name
            if sets is not None:
                sets.add(set_name)

    def _ptr_target(self, ip: str, owner: Claim | bool | None = False) -> bytes | None:
        """The name an IP's PTR gives: its identity owner, else the first static name still owned, else a fallback.
        `owner`: the IP's owner when the caller knows it already (False: look it up)."""
        if owner is False:
            owner = self._ip_owner(ip)
        if isinstance(owner, Claim):
            return owner.name
        for name in self._static.ptr_names.get(ip, ()):
            if self._static_owns_name(name) and self._confirms(name, ip):
                return name
        fallback = self._fallback.owner(ip)
        if fallback is not None:
            try:
                return names.to_wire(names.pod_ip_name(ip, fallback.pod.namespace, self.settings.cluster_domain))
            except ValueError:
                return None
        return None

    # -- introspection ---------------------------------------------------

    @property
    def conflicts(self):
        return self.book.items()

    def stats(self) -> dict[str, int]:
        return {
            "forward_names": len(self._names),
            "ptrs": self._ptr_count,
            "static_entries": len(self._static),
            "srv": self._srv.count,
            "static_records": sum(len(types) for types in self._records_written.values()),
            "conflicts": self.book.count,
        }

    def identities(self) -> Iterator[tuple[bytes, Claim]]:
        """Every identity name with its owner (in no particular order)."""
        index = self._names
        for name in list(index.keys()):
            owner = index.owner(name)
            if owner is not None:
                yield name, owner

    def describe(self) -> dict:
        """Every served identity name and PTR owner, and current conflicts (for /debug)."""
        from .describe import describe

        return describe(self)
