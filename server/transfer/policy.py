"""Who may transfer a zone: a request signed with a transfer key, or an unsigned one from a trusted network."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TransferPolicy:
    """Default: nobody. Keys are compared by canonical name (lower case, trailing dot)."""

    def __init__(self, transfer_keys: Iterable[str] = (), unsigned_networks: Iterable[str] = ()):
        self.transfer_keys = frozenset(_canonical(k) for k in transfer_keys)
        self.unsigned_networks: tuple[Network, ...] = tuple(ipaddress.ip_network(n.strip(), strict=False) for n in unsigned_networks)

    def allows(self, key_name: str | None, peer: tuple) -> bool:
        if key_name is not None and _canonical(key_name) in self.transfer_keys:
            return True
        return self.trusted(peer)

    def trusted(self, peer: tuple) -> bool:
        if not self.unsigned_networks or not peer:
            return False
        try:
            address = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.unsigned_networks)


def _canonical(name: str) -> str:
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."
