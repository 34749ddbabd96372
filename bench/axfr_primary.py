"""The zones of bench/axfr.py and our primary for it: N pods in the real zone store (once it can be
transferred) or the tests' fake one, and the transfer engine behind UDP and TCP in a process of its own;
and the same pods as a pod file for the real server (`server_argv`).

    python bench/axfr_primary.py PODS PORT KEY_FILE [--fake-store]
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from server.transfer import TransferService, TransferSettings  # noqa: E402
from server.zone import names, wire  # noqa: E402
from tests.fakestore import FakeStore, a_record, ptr_record  # noqa: E402

FORWARD = "pods.example.internal"
REVERSE = "10.in-addr.arpa"
NS_NAME = f"ns.{FORWARD}"
SECRET = "YmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtYmVuY2gtYmVuY2g="
SERIAL = 2026120301


def pod(i: int) -> tuple[str, str, str | None]:
    """The i-th pod (sets of three): its name, IPv4 and (two in five) IPv6 address."""
    v4 = f"10.{i // 65024 % 256}.{i // 254 % 256}.{i % 254 + 1}"
    v6 = f"fd00:10::{i >> 16:x}:{i & 0xFFFF:x}" if i % 5 < 2 else None
    return f"app-{i % 3}.set-{i // 3}.ns-{i // 3 % 40}.{FORWARD}", v4, v6


def write_pod_file(pods: int, path: Path) -> None:
    """The same pods as `kubectl get pods -A -o json` prints them (the fields the server reads), for the real server."""
    items = []
    for i in range(pods):
        name, v4, v6 = pod(i)
        hostname, subdomain, namespace = name.split(".")[:3]
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"{subdomain}-{hostname}", "namespace": namespace, "uid": f"bench-{i}"},
                "spec": {"hostname": hostname, "subdomain": subdomain, "containers": [{"name": "main", "image": "app:1"}]},
                "status": {"phase": "Running", "podIP": v4, "podIPs": [{"ip": ip} for ip in (v4, v6) if ip]},
            }
        )
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))


def server_argv(
    pod_file: Path, command: str = "serve", port: int = 0, key_file: Path | None = None, metrics_port: int | None = None
) -> list[str]:
    """The real server (or its export-zone) serving the bench's zones from the pod file (/readyz on `metrics_port`)."""
    argv = [sys.executable, "-m", "server", command, "--pods-file", str(pod_file), "--zone", FORWARD, "--reverse-cidr", "10.0.0.0/8"]
    argv += ["--ns-name", NS_NAME, "--ns-address", "192.0.2.53"]
    if command == "serve":
        metrics = f"127.0.0.1:{metrics_port}" if metrics_port else "off"
        argv += ["--listen", f"127.0.0.1:{port}", "--metrics-listen", metrics, "--lameduck", "0"]
        argv += ["--tsig-key-file", str(key_file), "--transfer-key", "bench-xfr"]
    return argv


def real_store_available() -> bool:
    """Whether server/zone/store.py has the transfer interface yet (the lead's store); else the tests' fake."""
    from server.zone.store import ZoneStore

    return hasattr(ZoneStore, "snapshot") and hasattr(ZoneStore, "add_listener")


def build_store(pods: int, real: bool = False):
    """The zones of `pods` pods in the real zone store, or in the tests' fake one."""
    if real:
        from server.zone.store import ZoneSettings, ZoneStore

        store = ZoneStore(ZoneSettings((FORWARD,), ("10.0.0.0/8",), 30, 5, ns_names=(NS_NAME,), ns_addresses=("192.0.2.53",)))  # type: ignore[call-arg]
        for i in range(pods):
            name, v4, v6 = pod(i)
            owner = names.to_wire(name)
            store.set_addresses(owner, *store.encode_addresses((v4, v6) if v6 else (v4,)))
            store.set_ptr(names.reverse_name(v4), owner)
        store.commit()
        return store
    fake = FakeStore()
    forward = fake.add_zone(FORWARD, SERIAL, NS_NAME)
    reverse = fake.add_zone(REVERSE, SERIAL, NS_NAME)
    forward.records[a_record(NS_NAME, "192.0.2.53")] = None
    for i in range(pods):
        name, v4, v6 = pod(i)
        forward.records[a_record(name, v4)] = None
        if v6:
            forward.records[a_record(name, v6)] = None
        reverse.records[ptr_record(v4, name)] = None
    return fake


def move_pod(store, i: int, ip: str) -> None:
    """Give pod i another IPv4 address and commit: one change of the forward zone."""
    name, _, v6 = pod(i)
    if isinstance(store, FakeStore):
        current = [r for r in store.zones[names.to_wire(FORWARD)].records if r.owner == names.to_wire(name) and r.rtype == wire.A]
        store.commit(names.to_wire(FORWARD), removed=current, added=[a_record(name, ip)])
    else:
        store.set_addresses(names.to_wire(name), *store.encode_addresses((ip, v6) if v6 else (ip,)))
        store.commit()


def zone_file(store, zone_name: str, path: Path) -> int:
    """The zone as an RFC 1035 file for Knot; its record count (SOA included)."""
    import dns.rdata

    snapshot = store.snapshot(names.to_wire(zone_name))
    lines = []
    for record in (snapshot.soa, *snapshot.records()):
        rdata = dns.rdata.from_wire(1, record.rtype, record.rdata, 0, len(record.rdata))
        lines.append(f"{names.to_text(record.owner)} {record.ttl} IN {wire.TYPE_NAMES.get(record.rtype, record.rtype)} {rdata.to_text()}")
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


def serial_of(store) -> int:
    return store.zones[names.to_wire(FORWARD)].serial


# -- our side: a primary process ------------------------------------------------------


def ordinary_answers(store):
    """(query, tcp) -> reply: the server's own answer path over the real store; over the fake one, its
    dnspython answers behind a per-question cache (the real server answers from pre-encoded pieces)."""
    if not isinstance(store, FakeStore):
        from server.zone.fastpath import respond

        return lambda query, tcp=False: respond(query, store, tcp)
    cached: dict[bytes, bytes] = {}

    def ordinary(query: bytes, tcp: bool = False) -> bytes | None:
        question = query[2:]
        reply = cached.get(question)
        if reply is None:
            reply = store.answer(query, tcp)
            if reply is None:
                return None
            cached[question] = reply[2:]
            return reply
        return query[:2] + reply

    return ordinary


def serve(pods: int, port: int, key_file: str, real: bool) -> None:
    """The engine behind UDP and TCP on 127.0.0.1:port (uvloop), until killed."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    store = build_store(pods, real)
    ordinary = ordinary_answers(store)
    service = TransferService(TransferSettings(key_files=(key_file,), transfer_keys=("bench-xfr",)), store, ordinary)

    class Udp(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            reply = service.handle(data, addr, False) if service.may_concern(data) else None
            reply = reply if reply is not None else ordinary(data)
            if isinstance(reply, bytes):
                self.transport.sendto(reply, addr)

    async def tcp(reader, writer):
        peer = writer.get_extra_info("peername")
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                query = await reader.readexactly(size)
                reply = service.handle(query, peer, True) if service.may_concern(query) else None
                if reply is None:
                    reply = ordinary(query, True)
                if isinstance(reply, bytes):
                    writer.write(len(reply).to_bytes(2, "big") + reply)
                elif reply is not None:
                    async for message in reply:
                        writer.write(len(message).to_bytes(2, "big") + message)
                        await writer.drain()
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main():
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", port))
        await asyncio.start_server(tcp, "127.0.0.1", port)
        await service.start()  # its warmer keeps the zones' chunks, as in the server
        print("ready", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], real_store_available() and "--fake-store" not in sys.argv)
