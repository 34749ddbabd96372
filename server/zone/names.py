"""Domain names: text <-> lower-cased wire form, and reverse-zone names for IPs and CIDRs.

Inside the server every name is kept as lower-cased wire bytes
(b"\\x07kafka-0\\x05kafka..."), the same bytes a query carries, so a query's
name is a dictionary key after one `.lower()`.
"""

from __future__ import annotations

import ipaddress
import socket

MAX_NAME = 255
MAX_LABEL = 63
ROOT = b"\x00"


def to_wire(name: str) -> bytes:
    """Text name (trailing dot optional) to lower-cased wire bytes; ValueError if invalid."""
    try:
        raw = name.strip().lower().encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"{name!r}: non-ASCII name") from None
    if raw.endswith(b"."):
        raw = raw[:-1]
    if not raw:
        return ROOT
    labels = raw.split(b".")
    for label in labels:
        if not label or len(label) > MAX_LABEL:
            raise ValueError(f"{name!r}: empty label or label longer than {MAX_LABEL} bytes")
    wire = b"".join([bytes((len(label),)) + label for label in labels]) + ROOT
    if len(wire) > MAX_NAME:
        raise ValueError(f"{name!r}: name longer than {MAX_NAME} bytes")
    return wire


def to_text(wire: bytes) -> str:
    """Wire name to text with a trailing dot (escaping dots and odd bytes as RFC 1035 does)."""
    labels = []
    i = 0
    while wire[i]:
        n = wire[i]
        labels.append(_escape(wire[i + 1 : i + 1 + n]))
        i += 1 + n
    return ".".join(labels) + "."


def _escape(label: bytes) -> str:
    out = []
    for b in label:
        c = chr(b)
        if c in '.\\"();@$':
            out.append("\\" + c)
        elif 0x21 <= b <= 0x7E:
            out.append(c)
        else:
            out.append(f"\\{b:03d}")
    return "".join(out)


def labels_end(packet: bytes, start: int) -> int:
    """Offset just past an uncompressed name at `start`; -1 if malformed (pointers included)."""
    starts = label_starts(packet, start)
    return -1 if starts is None else start + starts[-1] + 1


def label_starts(packet: bytes, start: int) -> list[int] | None:
    """Where each label of an uncompressed name at `start` begins, counted from `start`,
    the root's last; None if malformed (pointers included)."""
    name = packet[start : start + MAX_NAME]  # a name ends within 255 bytes: walk no further
    i = 0
    starts: list[int] = []
    add = starts.append
    try:
        while True:
            n = name[i]
            add(i)
            if not n:
                return starts
            if n > MAX_LABEL:
                return None
            i += n + 1
    except IndexError:
        return None


def parent(wire: bytes) -> bytes:
    """The name with its first label removed (root stays root)."""
    return wire[1 + wire[0] :] if wire[0] else wire


def is_subdomain(wire: bytes, apex: bytes) -> bool:
    """Whether `wire` equals `apex` or lies below it, on label boundaries."""
    while True:
        if wire == apex:
            return True
        if not wire[0]:
            return False
        wire = parent(wire)


_IN_ADDR = b"\x07in-addr\x04arpa\x00"
_IP6 = b"\x03ip6\x04arpa\x00"
_NIBBLE_LABELS = [bytes((1, ord(c))) for c in "0123456789abcdef"]
_OCTET_LABELS = [bytes((len(str(b)),)) + str(b).encode() for b in range(256)]


def reverse_name(ip: str) -> bytes:
    """The in-addr.arpa / ip6.arpa owner name of an address (inet_pton, no ipaddress objects)."""
    if ":" in ip:
        packed = socket.inet_pton(socket.AF_INET6, ip)
        return b"".join([_NIBBLE_LABELS[b & 15] + _NIBBLE_LABELS[b >> 4] for b in reversed(packed)]) + _IP6
    packed = socket.inet_pton(socket.AF_INET, ip)
    labels = _OCTET_LABELS
    return labels[packed[3]] + labels[packed[2]] + labels[packed[1]] + labels[packed[0]] + _IN_ADDR


def reverse_zones(cidr: str) -> list[tuple[bytes, ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    """Reverse zones exactly covering a CIDR, split at octet (IPv4) or nibble (IPv6) boundaries.

    10.244.0.0/16 -> [244.10.in-addr.arpa]; 10.96.0.0/12 -> sixteen /16 zones.
    Raises ValueError for a malformed CIDR or one with host bits set.
    """
    net = ipaddress.ip_network(cidr.strip(), strict=True)
    step = 8 if net.version == 4 else 4
    boundary = -(-net.prefixlen // step) * step
    zones = []
    for sub in net.subnets(new_prefix=boundary) if boundary != net.prefixlen else [net]:
        labels = sub.network_address.reverse_pointer.split(".")
        addr_labels = 4 if net.version == 4 else 32
        keep = boundary // step
        zones.append((to_wire(".".join(labels[addr_labels - keep :])), sub))
    return zones


def pod_ip_name(ip: str, namespace: str, cluster_domain: str) -> str:
    """CoreDNS's pod A name: a-b-c-d.<namespace>.pod.<cluster-domain> (IPv6 ':' -> '-')."""
    dashed = ipaddress.ip_address(ip).compressed.replace(".", "-").replace(":", "-")
    if dashed.endswith("-"):
        dashed += "0"
    if dashed.startswith("-"):
        dashed = "0" + dashed
    return f"{dashed}.{namespace}.pod.{cluster_domain.rstrip('.')}"
