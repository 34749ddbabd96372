"""Zone transfers in the server, in process: the flags and their one-line errors, the engine over the real
zone store (SERVFAIL before sync, a full transfer waits for a change written in steps, a closed stream lets
its snapshot go), and the metrics the server's handler produces."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import socket
import weakref

import dns.message
import dns.rcode
import dns.rdatatype
import dns.tsig
import pytest

from server import cli
from server.app import App
from server.config import ConfigError, build_config
from server.ops.metrics import Observer
from server.sources.pods import strip_pod
from server.transfer import service as transfer_service
from server.zone import names
from tests.conftest import ZONE
from tests.helpers import build, sts_pod
from tests.xfrclient import collect, parse_all

KEY = 'key "xfr" {\n\talgorithm hmac-sha256;\n\tsecret "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==";\n};\n'


def config(*argv: str, **keys):
    namespace = argparse.Namespace(config=None, **{"zones": [ZONE], **keys})
    for flag, value in zip(argv[::2], argv[1::2]):
        setattr(namespace, flag, value)
    return build_config(namespace)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            {"transfer_allow_unsigned": ["10.0.0.0/33"]},
            r"transfer_allow_unsigned \(--transfer-allow-unsigned\): '10.0.0.0/33' is not a CIDR",
        ),
        ({"notify": ["secondary.example:53"]}, r"notify \(--notify\): 'secondary.example:53' needs an IP address"),
        ({"notify": ["192.0.2.1:0"]}, r"port 0"),
        ({"notify": ["192.0.2.1"]}, r"is not HOST:PORT"),
        ({"notify_key": "xfr"}, r"notify_key \(--notify-key\): set, but no --notify target"),
        ({"ixfr_journal": "-1"}, r"ixfr_journal \(--ixfr-journal\): '-1': must be between 0 and 100000"),
        ({"ixfr_journal_bytes": str(1 << 40)}, r"ixfr_journal_bytes \(--ixfr-journal-bytes\): '\d+': must be between 0 and 4Gi"),
    ],
)
def test_bad_transfer_values_are_one_line_errors(keys, message):
    with pytest.raises(ConfigError, match=message) as caught:
        config(**keys)
    assert "\n" not in str(caught.value)


def test_transfer_values_are_parsed():
    parsed = config(notify=["192.0.2.1:5300", "[2001:db8::1]:53"], transfer_keys=["xfr"], ixfr_journal="7")
    assert parsed.notify == (("192.0.2.1", 5300), ("2001:db8::1", 53))
    assert parsed.transfer_keys == ("xfr",) and parsed.ixfr_journal == 7 and parsed.ixfr_journal_bytes == 16 << 20
    assert parsed.transfers_configured and not config().transfers_configured


def write_key(tmp_path, mode: int = 0o600) -> str:
    path = tmp_path / "tsig.key"
    path.write_text(KEY)
    os.chmod(path, mode)
    return str(path)


@pytest.mark.parametrize(
    ("extra", "mode", "message"),
    [
        ((), 0o644, "readable by group or others (mode 0644): chmod 600 it"),
        ((), 0o640, "readable by group or others (mode 0640)"),
        (("--transfer-key", "other"), 0o600, "--transfer-key other: no such key in the --tsig-key-file files"),
        (("--notify", "127.0.0.1:5300", "--notify-key", "nope"), 0o600, "--notify-key nope: no such key"),
    ],
)
def test_bad_key_files_and_names_stop_the_start_with_one_line_and_exit_code_2(tmp_path, capsys, extra, mode, message):
    key_file = write_key(tmp_path, mode)
    with socket.socket() as taken:  # nothing may be bound: the check comes first
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
    code = cli.main(["serve", "--zone", ZONE, "--listen", f"127.0.0.1:{port}", "--tsig-key-file", key_file, *extra])
    err = capsys.readouterr().err
    assert code == cli.EXIT_CONFIG
    assert err.count("\n") == 1 and message in err and err.startswith("pod-identity-dns: ")
    assert "c2VjcmV0" not in err  # never the secret


# -- the engine over the real store --------------------------------------------------------


def served_store(pods: int = 30):
    store, registry = build([sts_pod("web", i, f"10.244.1.{i + 1}") for i in range(pods)])
    return store, registry


def service_for(store):
    settings = transfer_service.TransferSettings(allow_unsigned=("127.0.0.0/8",))
    return transfer_service.TransferService(settings, store, lambda query, tcp: None)


def axfr(service, zone: str = ZONE):
    return service.handle(dns.message.make_query(zone, "AXFR").to_wire(), ("127.0.0.1", 5353), True)


async def test_transfers_get_servfail_until_the_store_has_synced():
    store, _ = served_store()
    service = service_for(store)
    store.synced = False
    reply = axfr(service)
    assert isinstance(reply, bytes) and dns.message.from_wire(reply).rcode() == dns.rcode.SERVFAIL
    store.synced = True
    messages = await collect(axfr(service))
    assert dns.message.from_wire(messages[0]).answer[0].rdtype == dns.rdatatype.SOA


async def test_a_full_transfer_waits_for_a_change_written_in_steps(monkeypatch):
    store, registry = served_store()
    service = service_for(store)
    sink = registry.sink("test")  # a second source, already synced
    sink.set_synced(True)
    store.busy = True
    half = names.to_wire(f"half.{ZONE}")
    store.set_addresses(half, *store.encode_addresses(["10.244.9.9"]))  # written, not committed: serials unmoved
    reply = axfr(service)
    assert not isinstance(reply, bytes)

    async def finish() -> None:
        await asyncio.sleep(0.05)
        store.set_addresses(names.to_wire(f"other-half.{ZONE}"), *store.encode_addresses(["10.244.9.10"]))
        store.commit()
        store.busy = False

    finisher = asyncio.create_task(finish())
    messages = await collect(reply)
    await finisher
    text = [str(rrset) for m in messages for rrset in dns.message.from_wire(m).answer]
    assert any(f"half.{ZONE}." in line for line in text) and any(f"other-half.{ZONE}." in line for line in text)
    assert f"SOA ns.{ZONE}. hostmaster.{ZONE}. {store.zones[names.to_wire(ZONE)].serial} " in text[0]

    # Once its chunks are kept (the warmer does that when commits pause), the serial is sent again at
    # once, as it was, while the next change is being written.
    apex = names.to_wire(ZONE)
    for _ in service.chunks.plan_steps(apex, store.snapshot(apex), 1.0):
        pass
    while not service.chunks.encode_step(apex, store.live(apex), 1.0):
        pass
    store.busy = True
    store.set_addresses(names.to_wire(f"third.{ZONE}"), *store.encode_addresses(["10.244.9.11"]))
    again = await collect(axfr(service))
    assert sorted(str(rrset) for m in again for rrset in dns.message.from_wire(m).answer) == sorted(text)
    assert not any(f"third.{ZONE}." in str(rrset) for m in again for rrset in dns.message.from_wire(m).answer)

    monkeypatch.setattr(transfer_service, "BUSY_WAIT", 0.05)
    store.commit()
    store.busy = True  # a serial not transferred yet, and a store that stays busy too long: SERVFAIL, never a mixed zone
    (late,) = await collect(axfr(service))
    assert dns.message.from_wire(late).rcode() == dns.rcode.SERVFAIL


async def test_a_closed_stream_lets_go_of_its_snapshot():
    store, _ = served_store(300)
    service = service_for(store)
    taken = []
    original = store.snapshot

    def spy(apex):
        snapshot = original(apex)
        taken.append(weakref.ref(snapshot))
        return snapshot

    store.snapshot = spy  # type: ignore[method-assign]
    service.settings = transfer_service.TransferSettings(allow_unsigned=("127.0.0.0/8",), message_size=512)
    stream = axfr(service)
    first = await stream.__anext__()
    assert first and taken and taken[0]() is not None
    await stream.aclose()  # what the TCP connection does when its client goes away or stalls
    del stream
    gc.collect()
    assert taken[0]() is None


@pytest.mark.parametrize(
    "make",
    [
        lambda: dns.message.make_query(ZONE, "AXFR"),
        lambda: dns.message.make_query("PoDs.ExAmPlE.iNtErNaL", "AXFR"),  # 0x20: its case kept, not used to compress
        lambda: dns.message.make_query(ZONE, "AXFR", use_edns=0, want_dnssec=True),
        lambda: dns.message.make_query(ZONE, "AXFR", flags=0),  # RD clear
    ],
)
async def test_a_full_transfer_from_kept_chunks_carries_what_encoding_it_afresh_gives(make):
    store, _ = served_store(400)
    settings = transfer_service.TransferSettings(allow_unsigned=("127.0.0.0/8",), message_size=1024)
    warm = transfer_service.TransferService(settings, store, lambda query, tcp: None)
    apex = names.to_wire(ZONE)
    warm.current_soa(apex)
    for _ in warm.chunks.plan_steps(apex, store.snapshot(apex), 1.0):  # what the warmer does once commits pause
        pass
    while not warm.chunks.encode_step(apex, store.live(apex), 1.0):
        pass
    taken = []
    snapshot = store.snapshot
    store.snapshot = lambda apex: taken.append(apex) or snapshot(apex)  # type: ignore[method-assign]
    query = make()
    kept = await collect(warm.handle(query.to_wire(), ("127.0.0.1", 1), True))
    assert taken == [] and len(kept) > 10  # every chunk copied
    fresh = await collect(
        transfer_service.TransferService(settings, store, lambda query, tcp: None).handle(query.to_wire(), ("127.0.0.1", 1), True)
    )
    parsed_kept, parsed_fresh = parse_all(kept, query, ixfr=True), parse_all(fresh, query, ixfr=True)  # one RR per RRset
    assert sorted(str(rrset) for m in parsed_kept for rrset in m.answer) == sorted(str(rrset) for m in parsed_fresh for rrset in m.answer)
    assert (
        kept[0][12 : 12 + len(query.question[0].name.to_wire()) + 4] == query.to_wire()[12 : 12 + len(query.question[0].name.to_wire()) + 4]
    )
    assert all(len(m) <= 1024 and m[2:4] == fresh[0][2:4] for m in kept)  # the same flags (RD as asked)
    assert (parsed_kept[0].edns >= 0) == (query.edns >= 0) and all(m.edns < 0 for m in parsed_kept[1:])


# -- metrics through the server's own handler -------------------------------------------------


async def test_the_servers_handler_counts_transfers_and_signed_queries(tmp_path):
    key_file = write_key(tmp_path)
    observer = Observer()
    app = App(config(tsig_key_files=[key_file], transfer_keys=["xfr"], transfer_allow_unsigned=["127.0.0.0/8"]), observer)
    sink = app.registry.sink("test")
    sink.replace_all([strip_pod(sts_pod("web", 0, "10.244.1.1"))])
    sink.set_synced(True)
    handler = app.handler(tcp=True)
    messages = await collect(handler(dns.message.make_query(ZONE, "AXFR").to_wire(), True, ("127.0.0.1", 5353)))
    assert len(messages) == 1 and dns.message.from_wire(messages[0]).answer[0].rdtype == dns.rdatatype.SOA
    refused = handler(dns.message.make_query(ZONE, "AXFR").to_wire(), True, ("192.0.2.1", 5353))
    assert dns.message.from_wire(refused).rcode() == dns.rcode.REFUSED
    plain = handler(dns.message.make_query(f"web-0.web.default.{ZONE}", "A").to_wire(), True, ("192.0.2.1", 5353))
    assert dns.message.from_wire(plain).answer  # ordinary queries are answered as before
    key = dns.tsig.Key("xfr.", "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==", "hmac-sha256")
    signed = dns.message.make_query(ZONE, "SOA")
    signed.use_tsig(key)
    reply = dns.message.from_wire(handler(signed.to_wire(), True, ("192.0.2.1", 5353)), keyring=key, request_mac=signed.mac)
    assert reply.had_tsig and reply.answer[0].rdtype == dns.rdatatype.SOA  # verified by dnspython
    text = observer.exposition("text/plain")[0].decode()
    assert 'poddns_tsig_queries_total{result="ok"} 1.0' in text
    assert 'poddns_transfers_total{result="full",type="axfr"} 1.0' in text
    assert 'poddns_transfers_total{result="refused",type="axfr"} 1.0' in text
    assert 'poddns_ixfr_journal_changes{zone="pods.example.internal."} 0.0' in text
    assert 'poddns_transfer_duration_seconds_count{type="axfr"} 1.0' in text
    records = dns.message.from_wire(messages[0], one_rr_per_rrset=True).answer  # the SOA twice
    assert f'poddns_transfer_records_total{{type="axfr"}} {float(sum(len(r) for r in records))}' in text
