"""Static host entries (the hosts file) as the registry uses them: names to addresses, addresses to PTR candidates."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from ..model import StaticEntry
from ..zone import names

log = logging.getLogger("pod_identity_dns.registry")


class StaticTable:
    """One complete set of static entries, indexed.

    - `addresses`: in-zone name -> its IPs, in file order (A/AAAA for every name on a line);
    - `ptr_names`: IP -> the names that may give its PTR, in file order: a line's
      first name first; the PTR goes to the first one the entries still own;
    - `names_of_ip`: IP -> in-zone names holding it (to rewrite them when the IP's owner changes).
    """

    __slots__ = ("_outside", "addresses", "names_of_ip", "ptr_names")

    def __init__(self) -> None:
        self.addresses: dict[bytes, list[str]] = {}
        self.ptr_names: dict[str, list[bytes]] = {}
        self.names_of_ip: dict[str, list[bytes]] = {}

    @classmethod
    def build(cls, entries: Iterable[StaticEntry], in_zone: Callable[[bytes], bool], reserved: Callable[[bytes], bool]) -> StaticTable:
        table = cls()
        builder = table.builder(in_zone, reserved)
        for entry in entries:
            builder(entry)
        table.finish()
        return table

    def builder(self, in_zone: Callable[[bytes], bool], reserved: Callable[[bytes], bool]) -> Callable[[StaticEntry], None]:
        """A function adding one entry to this (new) table; call finish() after the last."""
        self._outside = 0

        def add(entry: StaticEntry) -> None:
            for text in entry.names:
                try:
                    name = names.to_wire(text)
                except ValueError:
                    continue
                if reserved(name):
                    log.warning("static entry %s (line %d) is the server's own name server name: ignored", text, entry.line)
                    continue
                candidates = self.ptr_names.setdefault(entry.ip, [])
                if name not in candidates:
                    candidates.append(name)
                if not in_zone(name):
                    if self._outside < 20:
                        log.warning("static entry %s (line %d) is outside every --zone: no forward answer", text, entry.line)
                    self._outside += 1
                    continue
                ips = self.addresses.setdefault(name, [])
                if entry.ip not in ips:
                    ips.append(entry.ip)
                    self.names_of_ip.setdefault(entry.ip, []).append(name)

        return add

    def finish(self) -> None:
        if getattr(self, "_outside", 0) > 20:
            log.warning("and %d more static entries outside every --zone", self._outside - 20)

    def changed_against(self, old: StaticTable) -> tuple[set[bytes], set[str]]:
        """The names and IPs whose entries differ between `old` and this table."""
        changed_names: set[bytes] = set()
        changed_ips: set[str] = set()
        for _ in self.changed_steps(old, changed_names, changed_ips):
            pass
        return changed_names, changed_ips

    def changed_steps(self, old: StaticTable, changed_names: set[bytes], changed_ips: set[str], step: int = 50_000) -> Iterator[None]:
        """changed_against, filling the two sets and yielding every `step` keys compared."""
        count = 0
        for table_a, table_b in ((old, self), (self, old)):
            for name, ips in table_a.addresses.items():
                if table_b.addresses.get(name) != ips:
                    changed_names.add(name)
                    changed_ips.update(ips)
                    changed_ips.update(table_b.addresses.get(name, ()))
                count += 1
                if count % step == 0:
                    yield
            for ip, candidates in table_a.ptr_names.items():
                if table_b.ptr_names.get(ip) != candidates:
                    changed_ips.add(ip)
                count += 1
                if count % step == 0:
                    yield

    def ips_of_names(self, names_: Iterable[bytes]) -> set[str]:
        """Every IP a static entry gives one of these names (their PTR may name another now)."""
        out: set[str] = set()
        for name in names_:
            out.update(self.addresses.get(name, ()))
        return out

    def __len__(self) -> int:
        return len(self.addresses)
