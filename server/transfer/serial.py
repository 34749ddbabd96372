"""Serial numbers in SOA records: RFC 1982 comparison (the store's own), and reading or setting one."""

from __future__ import annotations

from ..zone.store import serial_after as newer

MASK = 0xFFFFFFFF

__all__ = ["MASK", "newer", "replace_soa_serial", "soa_serial"]


def replace_soa_serial(rdata: bytes, serial: int) -> bytes:
    """An SOA rdata with another serial (the serial is the first of its five trailing numbers)."""
    return rdata[:-20] + (serial & MASK).to_bytes(4, "big") + rdata[-16:]


def soa_serial(rdata: bytes) -> int:
    return int.from_bytes(rdata[-20:-16], "big")
