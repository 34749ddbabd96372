"""Serial number arithmetic (RFC 1982) for 32-bit SOA serials."""

from __future__ import annotations

HALF = 1 << 31
MASK = 0xFFFFFFFF


def newer(a: int, b: int) -> bool:
    """Whether serial `a` is greater than `b` in RFC 1982 terms (undefined pairs are not)."""
    return a != b and (a - b) & MASK < HALF


def replace_soa_serial(rdata: bytes, serial: int) -> bytes:
    """An SOA rdata with another serial (the serial is the first of its five trailing numbers)."""
    return rdata[:-20] + (serial & MASK).to_bytes(4, "big") + rdata[-16:]


def soa_serial(rdata: bytes) -> int:
    return int.from_bytes(rdata[-20:-16], "big")
