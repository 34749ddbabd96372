"""What the worst queries cost: every hostile shape against a plain query, in process, end to end, under a flood.

    .venv/bin/python bench/worst_queries.py [--rounds 7] [--udp-queries 2000] [--flood 3] [--flood-repeats 3]
        [--parts in-process,end-to-end,flood]

1. In process: `server.zone.fastpath.respond` over a store built like the
   tests' (tests/helpers.build), each shape of tests/hostile.py at 512, 1,472
   and 4,096 bytes (UDP) and 65,535 (TCP), timed in batches interleaved with
   a plain query; the minimum of the rounds of each, and their ratio.
2. End to end: the real server (configs/demo.yaml) over UDP, eight queries
   in flight, the server's own CPU per query (from /proc/PID/task/*/schedstat, in
   nanoseconds), interleaved with plain queries; the 65,535-byte messages
   over one TCP connection.
3. Flood (--flood SECONDS, 0 to skip): a second process sends one shape at
   its full rate while this one sends 2,000 valid queries a second and
   counts those answered within a 1-second client timeout; each shape right
   after the same flood of random bytes of the same size (garbage), in pairs
   (--flood-repeats, medians), as the flooder's rate drifts with the load;
   also issue 9's case, 40 chains a second, and no flood at all.

Targets: no shape over 20x a plain query; under a flood of any shape no more
valid queries lost than under the same flood of garbage. The numbers are only
comparable within one run: the machine's speed drifts (see README).
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import select
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.zone import message, names
from server.zone.fastpath import respond
from tests import hostile
from tests.helpers import build, sts_pod
from tests.serverproc import ServerProcess, read_tcp_frame

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
POOL = 512  # distinct packets for the shapes that must not repeat (random names, garbage)


def cases() -> list[tuple[str, int, bool, list[bytes]]]:
    """(shape, size, over TCP, packets): every shape of tests/hostile.py at every size."""
    rng = random.Random(9)
    out = []
    for name, make in hostile.SHAPES.items():
        for size in (*hostile.UDP_SIZES, hostile.TCP_SIZE):
            out.append((name, size, size > 4096, [make(size)]))
    deep = [hostile.deep_question(rng=rng) for _ in range(POOL)]
    out.append(("deep question (new name each time)", len(deep[0]), False, deep))
    random.seed(9)
    deep_opt = [hostile.deep_question_with_options() for _ in range(POOL)]
    out.append(("deep question + 30 EDNS options", len(deep_opt[0]), False, deep_opt))
    for size in (*hostile.UDP_SIZES, hostile.TCP_SIZE):
        out.append(("garbage (random bytes)", size, size > 4096, [hostile.garbage(size, rng) for _ in range(POOL)]))
    cookie = hostile.plain()[:11] + b"\x01" + hostile.plain()[12:] + b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x0c\x00\x0a\x00\x08cookie!!"
    out.append(("EDNS cookie (full path)", len(cookie), False, [cookie]))
    return out


def steps_of(packet: bytes) -> str:
    """The scanner's work on a packet, for the table."""
    if len(packet) < 12:
        return ""
    end = names.labels_end(packet, 12) if packet[5] == 1 and not packet[4] else -1
    if end < 0:
        return "-"
    try:
        return str(message.scan_sections(packet, end + 4).steps)
    except message.Malformed as exc:
        return f"{exc.steps} ({exc.reason})"


def time_batch(packets: list[bytes], store, tcp: bool, count: int) -> float:
    """CPU seconds per call: CPU time rather than wall time, so that being preempted by other
    processes on a shared machine does not count (it would, more, for the longer batches)."""
    n = len(packets)
    start = time.thread_time()
    for i in range(count):
        respond(packets[i % n], store, tcp)
    return (time.thread_time() - start) / count


def in_process(rounds: int) -> float:
    store, _ = build([sts_pod("kafka", i, f"10.244.1.{10 + i}") for i in range(3)])
    plain = [hostile.plain()]
    print("\n== in process: fastpath.respond, best of", rounds, "rounds, each batch interleaved with a plain query")
    base_times = [time_batch(plain, store, False, 2000) for _ in range(rounds)]
    base = min(base_times)
    print(f"plain query: {base * 1e6:.2f} us (rounds spread {min(base_times) * 1e6:.2f}-{max(base_times) * 1e6:.2f})")
    print(f"{'shape':40s} {'size':>6s} {'proto':>5s} {'us/query':>9s} {'ratio':>6s}  {'reply':8s} scanner steps")
    worst = (0.0, "")
    for name, size, tcp, packets in cases():
        count = 2000
        shape_times, plain_times = [], []
        for _ in range(rounds):
            plain_times.append(time_batch(plain, store, False, count))
            shape_times.append(time_batch(packets, store, tcp, count))
        ratio = min(shape_times) / min(plain_times)
        reply = respond(packets[0], store, tcp)
        rcode = RCODES.get(reply[3] & 0xF, str(reply[3] & 0xF)) if reply else "none"
        proto = "tcp" if tcp else "udp"
        print(f"{name:40s} {size:6d} {proto:>5s} {min(shape_times) * 1e6:9.2f} {ratio:6.1f}  {rcode:8s} {steps_of(packets[0])}")
        if ratio > worst[0]:
            worst = (ratio, f"{name}, {size} bytes")
    print(f"WORST in process: {worst[0]:.1f}x a plain query ({worst[1]}); target <= 20x")
    return worst[0]


def server_cpu_ns(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError):
            pass
    return total


def udp_windowed(port: int, packets: list[bytes], count: int, window: int = 8) -> int:
    """Send `count` queries keeping `window` unanswered at most (a lost one is given up after
    1 s); returns how many were answered."""
    answered = sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        n = len(packets)
        while sent < min(window, count):
            sock.sendto(packets[sent % n], ("127.0.0.1", port))
            sent += 1
        while answered < sent:
            try:
                sock.recv(65535)
                answered += 1
            except TimeoutError:
                sent = answered  # the rest are lost
                break
            if sent < count:
                sock.sendto(packets[sent % n], ("127.0.0.1", port))
                sent += 1
    return answered


def tcp_pipelined(port: int, packets: list[bytes], count: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        n = len(packets)
        for i in range(0, count, 20):  # in groups, so neither side's buffers fill up
            group = range(i, min(i + 20, count))
            sock.sendall(b"".join(len(packets[j % n]).to_bytes(2, "big") + packets[j % n] for j in group))
            for _ in group:
                read_tcp_frame(sock)
    return count


def end_to_end(queries: int, rounds: int) -> float:
    print(f"\n== end to end: the real server (configs/demo.yaml), server CPU per query, best of {rounds} rounds")
    worst = (0.0, "")
    with ServerProcess("--config", "configs/demo.yaml") as server:
        pid, port = server.proc.pid, server.port
        plain = [hostile.plain()]
        udp_windowed(port, plain, 500)  # warm up

        def cpu_per_query(send, packets, count) -> float:
            before = server_cpu_ns(pid)
            answered = send(port, packets, count)
            return (server_cpu_ns(pid) - before) / max(answered, 1) / 1000

        base_udp = min(cpu_per_query(udp_windowed, plain, queries) for _ in range(rounds))
        base_tcp = min(cpu_per_query(tcp_pipelined, plain, queries) for _ in range(rounds))
        print(f"plain query: {base_udp:.1f} us over UDP, {base_tcp:.1f} us over TCP (pipelined)")
        print("(the last column: against random bytes of the same size, what receiving that much costs anyway)")
        print(f"{'shape':40s} {'size':>6s} {'proto':>5s} {'us/query':>9s} {'ratio':>6s} {'/garbage':>8s}")
        costs = {}
        every = cases()
        every.sort(key=lambda case: not case[0].startswith("garbage"))  # garbage first: the last column needs it
        for name, size, tcp, packets in every:
            send = tcp_pipelined if tcp else udp_windowed
            count = queries // 10 if tcp else queries
            shape, plain_cost = [], []
            for _ in range(rounds):
                plain_cost.append(cpu_per_query(send, plain, count))
                shape.append(cpu_per_query(send, packets, count))
            ratio = min(shape) / min(plain_cost)
            costs[name, size] = min(shape)
            garbage = costs.get(("garbage (random bytes)", size))
            against = f"{min(shape) / garbage:8.2f}" if garbage else ""
            print(f"{name:40s} {size:6d} {'tcp' if tcp else 'udp':>5s} {min(shape):9.1f} {ratio:6.1f} {against}")
            if ratio > worst[0]:
                worst = (ratio, f"{name}, {size} bytes, {'tcp' if tcp else 'udp'}")
    print(f"WORST end to end: {worst[0]:.1f}x a plain query ({worst[1]}); target <= 20x")
    return worst[0]


def _flooder(port: int, packets: list[bytes], seconds: float, rate: float, sent) -> None:
    """Send `packets` round robin for `seconds`: at `rate` a second, or as fast as it can (0)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    address = ("127.0.0.1", port)
    n, count = len(packets), 0
    start = time.monotonic()
    deadline = start + seconds
    while time.monotonic() < deadline:
        if rate:
            time.sleep(max(0.0, start + count / rate - time.monotonic()))
        for i in range(count, count + (1 if rate else 500)):
            try:
                sock.sendto(packets[i % n], address)
            except BlockingIOError:
                pass
        count += 1 if rate else 500
    sent.value = count


def valid_queries(port: int, seconds: float, rate: int, timeout: float = 1.0) -> tuple[int, int]:
    """Send `rate` plain queries a second for `seconds`; (sent, answered within `timeout`)."""
    query = hostile.plain()
    total = int(seconds * rate)
    sent_at: list[float] = []
    answered = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        start = time.monotonic()
        while True:
            now = time.monotonic()
            if len(sent_at) < total and now >= start + len(sent_at) / rate:
                sock.sendto(len(sent_at).to_bytes(2, "big") + query[2:], ("127.0.0.1", port))
                sent_at.append(now)
                continue
            if len(sent_at) >= total and now > start + seconds + timeout:
                break
            ready, _, _ = select.select([sock], [], [], 0.0005)
            while ready:
                try:
                    reply = sock.recv(4096)
                except BlockingIOError:
                    break
                qid = int.from_bytes(reply[:2], "big")
                if qid < len(sent_at) and time.monotonic() - sent_at[qid] <= timeout:
                    answered += 1
    return total, answered


def flood_once(port: int, packets: list[bytes], seconds: float, rate: float = 0) -> tuple[float, float]:
    """(valid queries lost in %, flood packets sent a second) for one flood, or none (no packets)."""
    sent = multiprocessing.Value("q", 0)
    proc = None
    if packets:
        proc = multiprocessing.Process(target=_flooder, args=(port, packets, seconds + 0.4, rate, sent))
        proc.start()
        time.sleep(0.2)
    total, answered = valid_queries(port, seconds, 2000)
    if proc is not None:
        proc.join()
    return 100 * (1 - answered / total), sent.value / (seconds + 0.4)


def flood(seconds: float, repeats: int, shapes: list[tuple[str, list[bytes]]]) -> None:
    print(f"\n== flood: another process sends for {seconds:.0f} s while this one sends 2,000 valid queries/s (1 s timeout);")
    print(f"   each shape at the flooder's full rate right after the same flood of garbage, {repeats} times: median loss")
    rng = random.Random(3)
    garbage = [hostile.garbage(1472, rng) for _ in range(POOL)]
    worst = (-1.0, "", 0.0)
    with ServerProcess("--config", "configs/demo.yaml") as server:
        loss, _ = flood_once(server.port, [], seconds)
        print(f"{'no flood':45s} {'':>12s}  valid queries lost {loss:5.1f}%")
        loss, rate = flood_once(server.port, [hostile.pointer_chain(1472)], seconds, rate=40)
        print(f"{'40 pointer chains of 1472 bytes a second':45s} {rate:>10,.0f}/s  valid queries lost {loss:5.1f}%  (issue 9: 97%)")
        for label, packets in shapes:
            pairs = [(flood_once(server.port, garbage, seconds), flood_once(server.port, packets, seconds)) for _ in range(repeats)]
            garbage_loss = statistics.median(g[0] for g, _ in pairs)
            shape_loss = statistics.median(s[0] for _, s in pairs)
            garbage_rate = statistics.median(g[1] for g, _ in pairs)
            shape_rate = statistics.median(s[1] for _, s in pairs)
            print(f"{'garbage, 1472 bytes':45s} {garbage_rate:>10,.0f}/s  valid queries lost {garbage_loss:5.1f}%")
            print(
                f"{label:45s} {shape_rate:>10,.0f}/s  valid queries lost {shape_loss:5.1f}%  ({shape_loss - garbage_loss:+.1f} points)",
                flush=True,
            )
            if shape_loss - garbage_loss > worst[0]:
                worst = (shape_loss - garbage_loss, label, garbage_loss)
    print(f"WORST flood: {worst[1]}, {worst[0]:+.1f} points of valid queries lost against garbage ({worst[2]:.1f}%); target: <= 0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--udp-queries", type=int, default=1000)
    parser.add_argument("--flood", type=float, default=3.0, help="seconds per flood (0: no flood)")
    parser.add_argument("--flood-repeats", type=int, default=3, help="garbage/shape pairs per shape")
    parser.add_argument("--parts", default="in-process,end-to-end,flood", help="which parts to run, comma-separated")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    parts = set(args.parts.split(","))
    if "in-process" in parts:
        in_process(args.rounds)
    if "end-to-end" in parts:
        end_to_end(args.udp_queries, max(2, args.rounds // 2))
    if "flood" in parts and args.flood > 0:
        random.seed(5)
        shapes = [
            ("pointer chain, additional, 1472 bytes", [hostile.pointer_chain(1472)]),
            (f"pointer-only chain, {hostile.READ_LIMIT} records", [hostile.pointer_only_chain(1472, hostile.READ_LIMIT)]),
            (f"pointer chain, {hostile.READ_LIMIT} records", [hostile.pointer_chain(1472, limit=hostile.READ_LIMIT)]),
            ("EDNS options, 1472 bytes", [hostile.many_options(1472)]),
            ("deep question + 30 EDNS options", [hostile.deep_question_with_options() for _ in range(POOL)]),
            ("deep question (new name each time)", [hostile.deep_question() for _ in range(POOL)]),
        ]
        flood(args.flood, args.flood_repeats, shapes)


if __name__ == "__main__":
    main()
