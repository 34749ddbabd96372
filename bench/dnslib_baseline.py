"""Baseline for the benchmark: the plain way to write this server with dnslib.

asyncio + uvloop UDP; every query is parsed with dnslib.DNSRecord.parse and
every reply built and packed with dnslib, from an in-memory dict of dnslib RR
objects loaded from the zone files `python -m server export-zone` writes.
Minimal on purpose: A/AAAA/PTR/SOA/NS answers, NXDOMAIN and NODATA with the
SOA, REFUSED outside the zones, OPT echoed (payload 1232) when the query had one.

    python bench/dnslib_baseline.py --zone-dir DIR --listen 127.0.0.1:PORT
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

import dnslib
import uvloop
from dnslib import AAAA, EDNS0, NS, PTR, QTYPE, RCODE, RR, SOA, SRV, A, DNSRecord

RDATA = {
    "A": lambda text: A(text),
    "AAAA": lambda text: AAAA(text),
    "PTR": lambda text: PTR(text),
    "NS": lambda text: NS(text),
    "SOA": lambda text: (lambda f: SOA(f[0], f[1], tuple(int(x) for x in f[2:7])))(text.split()),
    "SRV": lambda text: (lambda f: SRV(int(f[0]), int(f[1]), int(f[2]), f[3]))(text.split()),
}


class Zones:
    def __init__(self, zone_dir: Path):
        self.records: dict[tuple[str, int], list[RR]] = {}
        self.names: set[str] = set()  # every existing name, empty non-terminals included
        self.soa: dict[str, RR] = {}
        for path in sorted(zone_dir.glob("*.zone")):
            apex = None
            for line in path.read_text().splitlines():
                if not line or line.startswith((";", "$")):
                    continue
                owner, ttl, _, rtype, rdata = line.split("\t", 4)
                owner = owner.lower()
                rr = RR(owner, getattr(QTYPE, rtype), ttl=int(ttl), rdata=RDATA[rtype](rdata))
                self.records.setdefault((owner, rr.rtype), []).append(rr)
                if rtype == "SOA":
                    apex = owner
                    self.soa[owner] = rr
                name = owner
                while name != apex and name not in self.names:
                    self.names.add(name)
                    name = name.split(".", 1)[1]
                self.names.add(apex)

    def zone_of(self, name: str) -> str | None:
        while True:
            if name in self.soa:
                return name
            if "." not in name.rstrip("."):
                return None
            name = name.split(".", 1)[1]


class Baseline(asyncio.DatagramProtocol):
    def __init__(self, zones: Zones):
        self.zones = zones

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            request = DNSRecord.parse(data)
        except dnslib.DNSError:
            return
        if request.header.qr or not request.questions:
            return
        reply = request.reply()  # QR, RD and ID copied, question echoed; dnslib sets RA: clear it
        reply.header.ra = 0
        q = request.q
        name = str(q.qname).lower()
        zone = self.zones.zone_of(name)
        if zone is None:
            reply.header.rcode = RCODE.REFUSED
            reply.header.aa = 0
        else:
            found = self.zones.records.get((name, q.qtype))
            if found:
                for rr in found:
                    reply.add_answer(rr)
            else:
                if name not in self.zones.names:
                    reply.header.rcode = RCODE.NXDOMAIN
                reply.add_auth(self.zones.soa[zone])
        if any(rr.rtype == QTYPE.OPT for rr in request.ar):
            reply.add_ar(EDNS0(udp_len=1232))
        self.transport.sendto(reply.pack(), addr)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zone-dir", required=True, type=Path)
    parser.add_argument("--listen", default="127.0.0.1:1053")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    zones = Zones(args.zone_dir)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    transport, _ = await loop.create_datagram_endpoint(lambda: Baseline(zones), local_addr=(host, int(port)))
    print(f"dnslib baseline: {len(zones.records)} RRsets, answering on {host} port {port} (UDP)", flush=True)
    await stop.wait()
    transport.close()


if __name__ == "__main__":
    uvloop.run(main())
