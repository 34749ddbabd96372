"""Static host entries (the hosts file) as the registry uses them: names to addresses, addresses to PTR candidates."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

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

    __slots__ = ("addresses", "names_of_ip", "ptr_names")

    def __init__(self) -> None:
        self.addresses: dict[bytes, list[str]] = {}
        self.ptr_names: dict[str, list[bytes]] = {}
        self.names_of_ip: dict[str, list[bytes]] = {}

    @classmethod
    def build(cls, entries: Iterable[StaticEntry], in_zone: Callable[[bytes], bool], reserved: Callable[[bytes], bool]) -> StaticTable:
        table = cls()
        outside_logged = 0
        for entry in entries:
            for text in entry.names:
                try:
                    name = names.to_wire(text)
                except ValueError:
                    continue
                if reserved(name):
                    log.warning("static entry %s (line %d) is the server's own name server name: ignored", text, entry.line)
                    continue
                candidates = table.ptr_names.setdefault(entry.ip, [])
                if name not in candidates:
                    candidates.append(name)
                if not in_zone(name):
                    if outside_logged < 20:
                        log.warning("static entry %s (line %d) is outside every --zone: no forward answer", text, entry.line)
                    outside_logged += 1
                    continue
                ips = table.addresses.setdefault(name, [])
                if entry.ip not in ips:
                    ips.append(entry.ip)
                    table.names_of_ip.setdefault(entry.ip, []).append(name)
        if outside_logged > 20:
            log.warning("and %d more static entries outside every --zone", outside_logged - 20)
        return table

    def changed_against(self, old: StaticTable) -> tuple[set[bytes], set[str]]:
        """The names and IPs whose entries differ between `old` and this table."""
        changed_names = {n for n in old.addresses.keys() | self.addresses.keys() if old.addresses.get(n) != self.addresses.get(n)}
        changed_ips = {ip for ip in old.ptr_names.keys() | self.ptr_names.keys() if old.ptr_names.get(ip) != self.ptr_names.get(ip)}
        for name in changed_names:
            changed_ips.update(old.addresses.get(name, ()))
            changed_ips.update(self.addresses.get(name, ()))
        return changed_names, changed_ips

    def ips_of_names(self, names_: Iterable[bytes]) -> set[str]:
        """Every IP a static entry gives one of these names (their PTR may name another now)."""
        out: set[str] = set()
        for name in names_:
            out.update(self.addresses.get(name, ()))
        return out

    def __len__(self) -> int:
        return len(self.addresses)
