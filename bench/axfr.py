"""AXFR and IXFR of a 100k-pod-sized zone: the transfer engine vs Knot, side by side, same clients.

    .venv/bin/python bench/axfr.py [--pods 100000] [--runs 5] [--only server|engine] [--fake-store]

Our side, in turn: the real server (`pod-identity-dns serve` from a pod file of
the pods, with --tsig-key-file and --transfer-key; Knot loads the zone files its
export-zone writes), then the engine alone (bench/axfr_primary.py: a small uvloop
primary over the real zone store, or the tests' fake one), each in a process of
its own against a knotd serving the same two zones. Both sign with the same TSIG
key. Per server:
  - AXFR time of the forward (~140k records) and the reverse (~100k PTR) zone,
    seen by a raw client that only reads framed messages and counts records,
    and by `dig axfr` (the same client for both);
  - the server process's peak memory during the transfer, above its resting size;
  - the largest gap between answers of a UDP client asking SOA and A in a loop
    while the transfer runs.
Before that, the real server's first AXFR of each zone the moment it answers (nothing kept yet: the
plain way) and, started afresh, the moment /readyz says ready (the first warm-up done: kept chunks).
Then, in process: an IXFR of one change at this size (server time), and the
cost per record of building transfer messages by hand, with dnspython and dnslib.
Targets: at most 2x Knot's time, +50 MiB peak at most, no query gap over 100 ms,
IXFR under 5 ms. Numbers are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import itertools
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import benchlib as bl  # noqa: E402
from bench.axfr_primary import (  # noqa: E402
    FORWARD,
    REVERSE,
    SECRET,
    build_store,
    move_pod,
    ordinary_answers,
    pod,
    real_store_available,
    serial_of,
    server_argv,
    write_pod_file,
    zone_file,
)
from bench.kube_procs import readyz  # noqa: E402
from server.transfer import TransferService, TransferSettings  # noqa: E402
from server.transfer.keys import parse_keys  # noqa: E402
from server.zone import names, wire  # noqa: E402

KEY_TEXT = f'key "bench-xfr" {{ algorithm hmac-sha256; secret "{SECRET}"; }};\n'


# -- Knot --------------------------------------------------------------------------------


def knot_conf(work: Path, port: int, files: dict[str, Path]) -> Path:
    for sub in ("knot-run", "knot-db"):
        (work / sub).mkdir(exist_ok=True)
    zones = "".join(f"  - domain: {zone}\n    file: {path}\n    acl: transfer\n" for zone, path in files.items())
    path = work / "knot.conf"
    path.write_text(f"""\
server:
    rundir: "{work / "knot-run"}"
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: warning
database:
    storage: "{work / "knot-db"}"
key:
  - id: bench-xfr
    algorithm: hmac-sha256
    secret: {SECRET}
acl:
  - id: transfer
    address: 127.0.0.1
    key: bench-xfr
    action: transfer
template:
  - id: default
    storage: "{work}"
    zonefile-sync: -1
    journal-content: none
zone:
{zones}""")
    return path


# -- clients -----------------------------------------------------------------------------


def axfr_request(zone: str, qtype: str = "AXFR", serial: int | None = None):
    import dns.message
    import dns.name
    import dns.rrset
    import dns.tsig

    query = dns.message.make_query(zone, qtype)
    if serial is not None:
        query.authority.append(dns.rrset.from_text(dns.name.from_text(zone), 0, "IN", "SOA", f". . {serial} 0 0 0 0"))
    query.use_tsig(dns.tsig.Key("bench-xfr.", SECRET, "hmac-sha256"))
    return query


def raw_axfr(port: int, zone: str, expected_records: int) -> tuple[float, int, int]:
    """Seconds, bytes and messages of one AXFR read as framed messages, records counted from ANCOUNT."""
    wire_query = axfr_request(zone).to_wire()
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(len(wire_query).to_bytes(2, "big") + wire_query)
        stream = sock.makefile("rb", buffering=1 << 20)
        records = size = messages = 0
        while records < expected_records:
            length = int.from_bytes(stream.read(2), "big")
            message = stream.read(length)
            if len(message) != length or length < 12:
                raise bl.BenchError(f"{zone}: transfer cut after {records} records")
            if message[3] & 0x0F:
                raise bl.BenchError(f"{zone}: rcode {message[3] & 0x0F}")
            records += int.from_bytes(message[6:8], "big")
            size += length + 2
            messages += 1
    return time.perf_counter() - started, size, messages


def dig_axfr(port: int, zone: str) -> tuple[float, int]:
    """Seconds and record count of `dig axfr` (output parsed, records counted)."""
    started = time.perf_counter()
    out = subprocess.run(
        ["dig", "@127.0.0.1", "-p", str(port), "-y", f"hmac-sha256:bench-xfr:{SECRET}", zone, "AXFR", "+nocomments", "+nostats"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    took = time.perf_counter() - started
    records = [line.split() for line in out.splitlines() if line and not line.startswith(";")]
    return took, sum(1 for fields in records if len(fields) > 3 and fields[3] != "TSIG")


class Prober(threading.Thread):
    """Asks SOA and one A name over UDP in a loop; the gaps between answers."""

    def __init__(self, port: int, name: str):
        super().__init__(daemon=True)
        self.port = port
        self.queries = [bl.query_bytes(FORWARD + ".", wire.SOA, False), bl.query_bytes(name + ".", wire.A, False)]
        self.gaps: list[float] = []
        self.lost = 0
        self.running = True

    def run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1.0)
            sock.connect(("127.0.0.1", self.port))
            last = time.perf_counter()
            index = 0
            while self.running:
                sock.send(self.queries[index % 2])
                index += 1
                try:
                    sock.recv(4096)
                except TimeoutError:
                    self.lost += 1
                now = time.perf_counter()
                self.gaps.append(now - last)
                last = now

    def stop(self) -> None:
        self.running = False
        self.join()


def clear_peak(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as handle:
        handle.write("5")  # resets VmHWM to the current RSS


def measure(servers: dict[str, tuple[int, int]], expected: dict[str, int], runs: int, probe_name: str) -> dict:
    """Per server and zone: the first AXFR after Knot has started (ours has kept the zone's chunks by then:
    its warmer encodes them a second after the load), with the UDP prober running and the peak memory
    reset; then AXFR times (runs interleaved between the servers, so both see the same machine); then dig."""
    out: dict = {label: {} for label in servers}
    for zone, count in expected.items():
        for label, (port, pid) in servers.items():
            resting = bl.memory(pid)["VmRSS"]
            clear_peak(pid)
            prober = Prober(port, probe_name)
            prober.start()
            time.sleep(0.2)
            first, size, messages = raw_axfr(port, zone, count)
            time.sleep(0.05)
            prober.stop()
            out[label][zone] = {
                "first": first,
                "peak": bl.memory(pid)["VmHWM"] - resting,
                "gap": max(prober.gaps) * 1000,
                "answers": len(prober.gaps),
                "bytes": size,
                "messages": messages,
            }
        times: dict[str, list[float]] = {label: [] for label in servers}
        for _ in range(runs):
            for label, (port, _) in servers.items():
                times[label].append(raw_axfr(port, zone, count)[0])
        for label, (port, _) in servers.items():
            dig_time, dig_records = dig_axfr(port, zone)
            if dig_records != count:
                raise bl.BenchError(f"{label} {zone}: dig counted {dig_records} records, expected {count}")
            result = out[label][zone]
            result.update(time=statistics.median(times[label]), best=min(times[label]), dig=dig_time)
            print(
                f"  {label:17s} {zone:22s} {count:7d} records  first {result['first'] * 1000:5.0f} ms, then median"
                f" {result['time'] * 1000:5.0f} ms (best {result['best'] * 1000:4.0f})  dig {dig_time * 1000:5.0f} ms"
                f"  {result['bytes'] / 2**20:4.1f} MiB in {result['messages']:3d} msgs  first: peak +{result['peak']:5.1f} MiB,"
                f" {result['answers']} answers meanwhile, max gap {result['gap']:5.1f} ms",
                flush=True,
            )
    return out


# -- in process ---------------------------------------------------------------------------


def ixfr_server_time(store, rounds: int = 200) -> list[float]:
    """Milliseconds of service.handle() for an IXFR of one change (a pod's new address)."""
    import base64

    from server.transfer import KeyRing
    from server.transfer.keys import make_key

    key = make_key("bench-xfr", "hmac-sha256", base64.b64decode(SECRET))
    service = TransferService(TransferSettings(transfer_keys=("bench-xfr",)), store, ordinary_answers(store), keys=KeyRing([key]))
    service.current_soa(names.to_wire(FORWARD))  # the SOA template comes from one snapshot, once
    times = []
    for i in range(rounds):
        old = serial_of(store)
        move_pod(store, 7, f"10.200.{i // 250}.{i % 250 + 1}")
        wire_query = axfr_request(FORWARD, "IXFR", old).to_wire()
        started = time.perf_counter()
        reply = service.handle(wire_query, ("127.0.0.1", 1), True)
        times.append((time.perf_counter() - started) * 1000)
        if not isinstance(reply, bytes) or int.from_bytes(reply[6:8], "big") < 5:
            raise bl.BenchError("the IXFR of one change was not one incremental message")
    return times


def axfr_in_process(store, rounds: int = 3) -> dict[str, float]:
    """Milliseconds for an AXFR of the forward zone in process, best of `rounds`: the engine with the zone
    not planned (the plain way), after one change (its chunk encoded from a snapshot),
    after one change the warmer has encoded, and with every chunk kept; and the encoder alone, the
    store's RRsets spliced and record by record."""
    import asyncio
    from operator import itemgetter

    from server.transfer.encoder import pack_messages, pack_pieces

    apex = names.to_wire(FORWARD)
    service = TransferService(TransferSettings(allow_unsigned=("127.0.0.0/8",)), store, ordinary_answers(store))
    query = bl.query_bytes(FORWARD + ".", wire.AXFR, False)
    assert service.chunks is not None

    async def transfer() -> None:
        async for _ in service.handle(query, ("127.0.0.1", 1), True):
            pass

    def best(run, before=lambda: None) -> float:
        times = []
        for _ in range(rounds):
            before()
            started = time.perf_counter()
            run()
            times.append((time.perf_counter() - started) * 1000)
        return min(times)

    moves = itertools.count()

    def one_change() -> None:
        move_pod(store, 11, f"10.201.{next(moves) % 250}.1")

    def keep_all() -> None:
        if service.chunks.needs_plan(apex):
            for _ in service.chunks.plan_steps(apex, store.snapshot(apex), 10.0):
                pass
        while not service.chunks.encode_step(apex, store.live(apex), 10.0):
            pass

    def kept_then_changed() -> None:
        keep_all()
        one_change()

    def warmed_change() -> None:
        one_change()
        keep_all()

    def warm_from_scratch() -> None:
        service.chunks.forget(apex)
        keep_all()

    question = apex + b"\x00\xfc\x00\x01"
    snapshot = store.snapshot(apex)
    spliced = best(lambda: sum(1 for _ in pack_pieces(map(itemgetter(0, 2), snapshot.rrsets()), b"\x00\x01", 0x8400, question, 16384)))
    one_by_one = best(lambda: sum(1 for _ in pack_messages(snapshot.records(), b"\x00\x01", 0x8400, question, 16384)))
    cold = best(lambda: asyncio.run(transfer()), lambda: service.chunks.forget(apex))
    warming = best(warm_from_scratch)
    changed = best(lambda: asyncio.run(transfer()), kept_then_changed)
    warmed = best(lambda: asyncio.run(transfer()), warmed_change)
    kept = best(lambda: asyncio.run(transfer()))
    chunks = service.chunks.zones[apex]
    return {
        "cold": cold,
        "warming": warming,
        "changed": changed,
        "warmed": warmed,
        "kept": kept,
        "spliced": spliced,
        "one_by_one": one_by_one,
        "chunks": chunks.count,
        "kept_mib": chunks.kept_bytes / 2**20,
    }


def encoding_costs(store, sample: int = 20000) -> dict[str, float]:
    """Microseconds per record of building transfer messages: by hand, with dnspython, with dnslib."""
    import dns.message
    import dns.name
    import dns.rdata
    import dnslib

    from server.transfer.encoder import pack_messages

    records = list(itertools.islice(store.snapshot(names.to_wire(FORWARD)).records(), sample))
    question = names.to_wire(FORWARD) + b"\x00\xfc\x00\x01"
    started = time.perf_counter()
    for _ in pack_messages(iter(records), b"\x00\x01", 0x8400, question, 16000):
        pass
    hand = (time.perf_counter() - started) / len(records) * 1e6

    started = time.perf_counter()
    message = dns.message.make_response(dns.message.make_query(FORWARD, "AXFR"))
    for index, record in enumerate(records):
        rdata = dns.rdata.from_wire(1, record.rtype, record.rdata, 0, len(record.rdata))
        owner = dns.name.from_wire(record.owner, 0)[0]
        message.find_rrset(message.answer, owner, 1, record.rtype, create=True).add(rdata, record.ttl)
        if index % 500 == 499:
            message.to_wire(max_size=65535)
            message = dns.message.make_response(dns.message.make_query(FORWARD, "AXFR"))
    with_dnspython = (time.perf_counter() - started) / len(records) * 1e6

    started = time.perf_counter()
    reply = dnslib.DNSRecord(dnslib.DNSHeader(qr=1, aa=1), q=dnslib.DNSQuestion(FORWARD, dnslib.QTYPE.AXFR))
    for index, record in enumerate(records):
        rdata = (
            dnslib.A(socket.inet_ntop(socket.AF_INET, record.rdata))
            if record.rtype == wire.A
            else dnslib.AAAA(socket.inet_ntop(socket.AF_INET6, record.rdata))
            if record.rtype == wire.AAAA
            else dnslib.RD(record.rdata)
        )
        reply.add_answer(dnslib.RR(names.to_text(record.owner), record.rtype, rdata=rdata, ttl=record.ttl))
        if index % 500 == 499:
            reply.pack()
            reply = dnslib.DNSRecord(dnslib.DNSHeader(qr=1, aa=1), q=dnslib.DNSQuestion(FORWARD, dnslib.QTYPE.AXFR))
    with_dnslib = (time.perf_counter() - started) / len(records) * 1e6
    return {"hand": hand, "dnspython": with_dnspython, "dnslib": with_dnslib}


# -- main ----------------------------------------------------------------------------------


def compare(
    procs: bl.Processes,
    work: Path,
    label: str,
    ours: subprocess.Popen,
    port: int,
    files: dict[str, Path],
    runs: int,
    pods: int,
    serial: int,
) -> None:
    """Our primary (started, answering on `port`) against knotd serving `files`, side by side; both stopped after."""
    work.mkdir(exist_ok=True)
    expected = {zone: count_records(path) + 1 for zone, path in files.items()}  # the SOA comes twice
    knot_port = bl.free_port()
    knot = procs.start("knotd", ["knotd", "-c", str(knot_conf(work, knot_port, files))], work / "knot.log")
    bl.wait_answering(knot_port, knot, time.monotonic(), 120, work / "knot.log", "knotd", serial=serial)
    probe_name = pod(12345 % pods)[0]
    print(f"{label}: forward {expected[FORWARD] - 2} records + SOA, reverse {expected[REVERSE] - 2} + SOA; {runs} runs each, interleaved")
    results = measure({label: (port, ours.pid), "knotd": (knot_port, knot.pid)}, expected, runs, probe_name)
    print("ratios (ours / Knot):")
    for zone in files:
        a, b = results[label][zone], results["knotd"][zone]
        print(
            f"  {zone:22s} first x{a['first'] / b['first']:.2f}, then x{a['time'] / b['time']:.2f} (best x{a['best'] / b['best']:.2f};"
            f" target <= 2)  dig x{a['dig'] / b['dig']:.2f}  peak +{a['peak']:.1f} MiB vs +{b['peak']:.1f} (target +50 at most)"
            f"  max gap {a['gap']:.1f} ms vs {b['gap']:.1f} (target <= 100)"
        )
    print(f"resting memory: ours {bl.memory(ours.pid)['VmRSS']:.0f} MiB, knotd {bl.memory(knot.pid)['VmRSS']:.0f} MiB", flush=True)
    procs.stop(knot)
    procs.stop(ours)


def count_records(path: Path) -> int:
    """Records in a zone file (one per line; $ORIGIN, comments and blank lines aside)."""
    with path.open() as handle:
        return sum(1 for line in handle if line.strip() and not line.startswith((";", "$")))


def real_server(procs: bl.Processes, work: Path, pods: int, key_file: Path, runs: int) -> None:
    """The real server from a pod file of the same pods; Knot loads what its export-zone writes."""
    work.mkdir(exist_ok=True)
    pod_file = work / "pods.json"
    write_pod_file(pods, pod_file)
    export = work / "export"
    subprocess.run(server_argv(pod_file, "export-zone") + ["--output-dir", str(export)], cwd=REPO, check=True, timeout=300)
    files = {zone: export / f"{zone}.zone" for zone in (FORWARD, REVERSE)}
    expected = {zone: count_records(path) + 1 for zone, path in files.items()}
    for window in ("answers", "ready"):
        port, metrics_port = bl.free_port(), bl.free_port()
        started = time.monotonic()
        ours = procs.start("pod-identity-dns", server_argv(pod_file, "serve", port, key_file, metrics_port), work / "server.log")
        took, _ = bl.wait_answering(port, ours, started, 300, work / "server.log", "pod-identity-dns")
        if window == "ready":  # a Service sends secondaries to ready replicas only, and NOTIFY waits as long
            while readyz(metrics_port) != 200:
                if ours.poll() is not None or time.monotonic() - started > 300:
                    raise bl.BenchError("the server did not become ready:\n" + bl.tail(work / "server.log"))
                time.sleep(0.01)
        ready = f", ready after {time.monotonic() - started:.2f} s" if window == "ready" else ""
        print(
            f"the real server answers after {took:.2f} s{ready} ({pods} pods in a pod file, VmHWM {bl.memory(ours.pid)['VmHWM']:.0f} MiB)",
            flush=True,
        )
        first = {zone: raw_axfr(port, zone, count)[0] for zone, count in expected.items()}
        what = "nothing kept yet, the plain way" if window == "answers" else "every chunk kept"
        print(
            f"  AXFR the moment it {'answers' if window == 'answers' else 'is ready'} ({what}): "
            + ", ".join(f"{zone} {s * 1000:.0f} ms" for zone, s in first.items()),
            flush=True,
        )
        if window == "answers":
            procs.stop(ours)
    compare(procs, work, "pod-identity-dns", ours, port, files, runs, pods, bl.zone_file_serial(files[FORWARD]))


def engine_primary(procs: bl.Processes, work: Path, store, pods: int, key_file: Path, runs: int, real: bool) -> None:
    """The engine alone (bench/axfr_primary.py) over the same store as the in-process measures."""
    work.mkdir(exist_ok=True)
    files = {FORWARD: work / "forward.zone", REVERSE: work / "reverse.zone"}
    for zone, path in files.items():
        zone_file(store, zone, path)
    port = bl.free_port()
    argv = [sys.executable, str(REPO / "bench" / "axfr_primary.py"), str(pods), str(port), str(key_file)]
    ours = procs.start("engine", argv + ([] if real else ["--fake-store"]), work / "ours.log")
    deadline = time.monotonic() + 300
    while "ready" not in (work / "ours.log").read_text():
        if ours.poll() is not None or time.monotonic() > deadline:
            raise bl.BenchError("our primary did not start:\n" + bl.tail(work / "ours.log"))
        time.sleep(0.1)
    compare(procs, work, "engine alone", ours, port, files, runs, pods, serial_of(store))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", choices=("server", "engine"), help="measure only the real server, or only the engine alone")
    parser.add_argument("--fake-store", action="store_true", help="the engine alone over the tests' fake store instead of the real one")
    args = parser.parse_args()
    real = real_store_available() and not args.fake_store

    bl.install_deadline(1500)
    procs = bl.Processes()
    print(f"building {args.pods} pods in the {'real zone store' if real else 'fake store of the tests'} ...", flush=True)
    store = build_store(args.pods, real)
    try:
        with tempfile.TemporaryDirectory(prefix="axfr-bench-") as tmp:
            work = Path(tmp)
            key_file = work / "bench.keys"
            key_file.write_text(KEY_TEXT)
            key_file.chmod(0o600)
            assert parse_keys(KEY_TEXT)
            if args.only != "engine":
                real_server(procs, work / "server", args.pods, key_file, args.runs)
            if args.only != "server":
                engine_primary(procs, work / "engine", store, args.pods, key_file, args.runs, real)
    finally:
        procs.stop_all()

    print("in process:")
    ixfr = ixfr_server_time(store)
    print(
        f"  IXFR of one change at {args.pods} pods: median {statistics.median(ixfr):.3f} ms, max {max(ixfr):.3f} ms of server time"
        " (target < 5 ms)"
    )
    axfr = axfr_in_process(store)
    print(
        f"  AXFR of the forward zone in process ({axfr['chunks']} chunks, {axfr['kept_mib']:.1f} MiB kept): not planned"
        f" {axfr['cold']:.0f} ms, after one change {axfr['changed']:.1f} ms, after one change the warmer encoded"
        f" {axfr['warmed']:.1f} ms, everything kept {axfr['kept']:.1f} ms; the warmer's work to plan and keep it all {axfr['warming']:.0f} ms (the encoder alone over the zone: RRsets spliced"
        f" {axfr['spliced']:.0f} ms, record by record {axfr['one_by_one']:.0f} ms)"
    )
    costs = encoding_costs(store)
    print(
        f"  building transfer messages per record: by hand {costs['hand']:.2f} us, dnspython {costs['dnspython']:.1f} us"
        f" (x{costs['dnspython'] / costs['hand']:.0f}), dnslib {costs['dnslib']:.1f} us (x{costs['dnslib'] / costs['hand']:.0f})"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except bl.BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
