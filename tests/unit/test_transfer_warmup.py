"""The first warm-up after a sync: the server is not ready and sends no NOTIFY until every zone's
chunks are kept, so the first full transfers (a Service sends them to ready replicas only, a NOTIFY
invites them) copy kept messages; and a warm-up that never ends holds neither for long."""

from __future__ import annotations

import asyncio
import logging

import dns.message
import dns.opcode

from server.transfer import service as transfer_service
from server.transfer import warmer
from server.zone import names
from tests.unit.test_transfer_chunks import APEX, PEER, REVERSE, Cluster, axfr_query, records_of, zone_now
from tests.xfrclient import collect


class NotifyCatcher(asyncio.DatagramProtocol):
    """A secondary's NOTIFY socket: notes each zone announced and what the primary had kept by then."""

    def __init__(self, service_box: list):
        self.service_box = service_box
        self.seen: list[tuple[str, bool, int]] = []  # (zone, still warming up, chunks not kept)

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        message = dns.message.from_wire(data)
        assert message.opcode() == dns.opcode.NOTIFY
        service = self.service_box[0]
        apex = names.to_wire(message.question[0].name.to_text())
        chunks = service.chunks.zones.get(apex)
        self.seen.append((message.question[0].name.to_text(), service.warming_up, -1 if chunks is None else chunks.unkept))
        reply = dns.message.make_response(message)
        self.transport.sendto(reply.to_wire(), addr)


async def catcher() -> tuple[asyncio.DatagramTransport, NotifyCatcher, int, list]:
    box: list = []
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(lambda: NotifyCatcher(box), local_addr=("127.0.0.1", 0))
    return transport, protocol, transport.get_extra_info("sockname")[1], box


def service_with_notify(store, port: int):
    settings = transfer_service.TransferSettings(allow_unsigned=("127.0.0.0/8",), notify=(("127.0.0.1", port),), notify_interval=0.0)
    return transfer_service.TransferService(settings, store, lambda query, tcp: None)


async def wait_for(condition, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


async def test_readiness_and_notify_wait_until_every_zone_is_kept(caplog):
    caplog.set_level(logging.INFO, "pod_identity_dns.transfer")
    cluster = Cluster(6000)
    transport, secondary, port, box = await catcher()
    service = service_with_notify(cluster.store, port)
    box.append(service)
    service.current_soa(APEX)
    assert not service.warming_up, "nothing to wait for before the start"
    await service.start()
    try:
        assert service.warming_up, "synced, and nothing kept yet"
        await asyncio.sleep(0)
        assert secondary.seen == [], "no NOTIFY before the zones are kept"
        await wait_for(lambda: not service.warming_up)
        for apex in (APEX, REVERSE):
            assert service.chunks.zones[apex].unkept == 0, "ready means every chunk kept"
        await wait_for(lambda: len(secondary.seen) >= 2)
        assert sorted(zone for zone, _, _ in secondary.seen) == ["10.in-addr.arpa.", "pods.example.internal."]
        assert all(not warming and unkept == 0 for _, warming, unkept in secondary.seen)
        assert any("transfer messages kept in" in record.getMessage() for record in caplog.records)

        encoded = service.chunks.encoded
        messages = await collect(service.handle(axfr_query(), PEER, True))
        assert service.chunks.encoded == encoded, "the first transfer after the warm-up copies kept chunks"
        assert records_of(messages) == zone_now(cluster.store)

        cluster.put(3, "10.250.0.3")  # later changes are announced at once, as before
        cluster.store.commit()
        await wait_for(lambda: len(secondary.seen) >= 3)
        assert not service.warming_up
    finally:
        await service.stop()
        transport.close()


async def test_a_warm_up_that_never_ends_holds_readiness_and_notify_only_so_long(monkeypatch, caplog):
    monkeypatch.setattr(warmer, "WARM_HOLD_LONGEST", 0.2)

    async def stuck(self, apex):
        await asyncio.Event().wait()

    monkeypatch.setattr(warmer.ChunkWarmer, "_warm_zone", stuck)
    cluster = Cluster(100)
    transport, secondary, port, box = await catcher()
    service = service_with_notify(cluster.store, port)
    box.append(service)
    service.current_soa(APEX)
    await service.start()
    try:
        assert service.warming_up
        await asyncio.sleep(0.1)
        assert service.warming_up and secondary.seen == []
        await wait_for(lambda: len(secondary.seen) >= 2, 3.0)  # released by the timer, without anyone asking
        assert not service.warming_up
        assert any("took over 0.2 s: ready without it" in record.getMessage() for record in caplog.records)
    finally:
        await service.stop()
        transport.close()


async def test_without_chunks_there_is_no_warm_up():
    from tests.fakestore import FakeStore

    store = FakeStore()
    store.add_zone("pods.example.internal", 1, "ns.pods.example.internal")
    service = transfer_service.TransferService(transfer_service.TransferSettings(allow_unsigned=("127.0.0.0/8",)), store, lambda q, t: None)
    await service.start()
    try:
        assert service.chunks is None and not service.warming_up
    finally:
        await service.stop()
