"""Prototype: other UDP front ends for the same answer function, measured side by side.

Not the server: a measurement of where the per-query cost can go. Every
variant serves the very same ZoneStore (built by server.app.App from the same
pod file) and answers with server.zone.fastpath.respond; only the socket handling
differs:

  app        the real server (`python -m server serve --udp-frontend uvloop`): uvloop
             DatagramProtocol, datagram_received -> handler -> respond -> fast_answer
  batched    the real server with --udp-frontend batched (server/serve/udpbatch.py):
             the mmsg variant below made a front end, behind the same handler
  flat       uvloop DatagramProtocol, datagram_received calls fast_answer itself
             (bound locals, no lambda/respond layers): what the glue costs
  drain      loop.add_reader on a non-blocking socket; the callback drains it with
             sock.recvfrom / sock.sendto until EAGAIN (at most 256 per wakeup)
  mmsg       loop.add_reader; recvmmsg/sendmmsg through ctypes, up to 64 queries
             per system call, replies sent from preallocated buffers to the
             sockaddr the kernel filled in (no Python address objects at all)
  echo       uvloop DatagramProtocol that returns the query with QR set: no DNS
             work, the ceiling of the uvloop datagram path itself

    python bench/udp_variants.py [--pods N] [--duration S] [--rounds R] [--variants app,flat,...]
    python bench/udp_variants.py serve --variant V --port P -- SERVE_ARGS...   (used by the above)
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import errno
import signal
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

VARIANTS = ("app", "batched", "flat", "drain", "mmsg", "echo")


# -- the variants (run inside the serving process) ------------------------------------


def build_view(serve_args: list[str]):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from server.app import App
    from server.cli import make_parser
    from server.config import build_config

    config = build_config(make_parser().parse_args(["serve", *serve_args]))
    app = App(config)
    asyncio.run(app.load_sources())
    return app.store


def udp_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)  # as server/app.py does
    sock.bind(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


class Flat(asyncio.DatagramProtocol):
    def __init__(self, view):
        from server.zone.answer import answer
        from server.zone.fastpath import fast_answer

        self.view, self.fast, self.full = view, fast_answer, answer

    def connection_made(self, transport):
        self.sendto = transport.sendto

    def datagram_received(self, data, addr):
        reply = self.fast(data, self.view) or self.full(data, self.view)
        if reply is not None:
            self.sendto(reply, addr)


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.sendto = transport.sendto

    def datagram_received(self, data, addr):
        self.sendto(data[:2] + bytes([data[2] | 0x80]) + data[3:], addr)


def serve_drain(loop, sock, view, batch: int = 256):
    from server.zone.fastpath import respond

    recvfrom, sendto = sock.recvfrom, sock.sendto

    def readable():
        for _ in range(batch):
            try:
                data, addr = recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            reply = respond(data, view)
            if reply is not None:
                try:
                    sendto(reply, addr)
                except (BlockingIOError, InterruptedError):
                    pass  # send buffer full: drop, as a loaded server must

    loop.add_reader(sock.fileno(), readable)


# struct mmsghdr on Linux x86-64/arm64: msghdr (56 bytes) + msg_len (4) + padding (4) = 64 bytes
class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.c_void_p),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint32)]


def serve_mmsg(loop, sock, view, batch: int = 64, rounds: int = 4):
    from server.zone.fastpath import respond

    assert ctypes.sizeof(_Mmsghdr) == 64 and ctypes.sizeof(_Iovec) == 16
    libc = ctypes.CDLL(None, use_errno=True)
    recvmmsg, sendmmsg = libc.recvmmsg, libc.sendmmsg
    recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    STRIDE, NAMELEN, MSG_DONTWAIT = 1536, 28, 0x40
    # Every array lives in a bytearray, so Python can read and write it through memoryviews.
    raw = {
        k: bytearray(size * batch)
        for k, size in (("in", STRIDE), ("out", STRIDE), ("names", NAMELEN), ("rio", 16), ("sio", 16), ("rmsg", 64), ("smsg", 64))
    }
    inbuf = (ctypes.c_char * (STRIDE * batch)).from_buffer(raw["in"])
    outbuf = (ctypes.c_char * (STRIDE * batch)).from_buffer(raw["out"])
    names = (ctypes.c_char * (NAMELEN * batch)).from_buffer(raw["names"])
    rio, sio = (_Iovec * batch).from_buffer(raw["rio"]), (_Iovec * batch).from_buffer(raw["sio"])
    rmsg, smsg = (_Mmsghdr * batch).from_buffer(raw["rmsg"]), (_Mmsghdr * batch).from_buffer(raw["smsg"])
    for i in range(batch):
        rio[i].base, rio[i].len = ctypes.addressof(inbuf) + i * STRIDE, STRIDE
        sio[i].base = ctypes.addressof(outbuf) + i * STRIDE
        rmsg[i].hdr.name, rmsg[i].hdr.namelen = ctypes.addressof(names) + i * NAMELEN, NAMELEN
        rmsg[i].hdr.iov, rmsg[i].hdr.iovlen = ctypes.addressof(rio) + i * 16, 1
        smsg[i].hdr.iov, smsg[i].hdr.iovlen = ctypes.addressof(sio) + i * 16, 1
    # Plain memory views: reading lengths and writing pointers without ctypes objects per packet.
    inmv, outmv = memoryview(raw["in"]), memoryview(raw["out"])
    r32 = memoryview(raw["rmsg"]).cast("I")  # 16 words per mmsghdr: namelen at 2, msg_len at 14
    s32 = memoryview(raw["smsg"]).cast("I")
    s64 = memoryview(raw["smsg"]).cast("Q")  # 8 words per mmsghdr: name pointer at 0
    sio64 = memoryview(raw["sio"]).cast("Q")  # 2 words per iovec: length at 1
    name_addr = [ctypes.addressof(names) + i * NAMELEN for i in range(batch)]
    fd = sock.fileno()
    serve_mmsg.keep = (raw, inbuf, outbuf, names, rio, sio, rmsg, smsg)  # keep the memory alive
    rptr, sptr = ctypes.addressof(rmsg), ctypes.addressof(smsg)

    def readable():
        for _ in range(rounds):
            n = recvmmsg(fd, rptr, batch, MSG_DONTWAIT, None)
            if n <= 0:
                return
            out = 0
            for i in range(n):
                start = i * STRIDE
                reply = respond(bytes(inmv[start : start + r32[i * 16 + 14]]), view)
                namelen = r32[i * 16 + 2]
                r32[i * 16 + 2] = NAMELEN  # the kernel wrote the actual length; reset for the next call
                if reply is None:
                    continue
                size = len(reply)
                if size > STRIDE:
                    continue  # cannot happen over UDP (replies are cut at 1232 bytes)
                base = out * STRIDE
                outmv[base : base + size] = reply
                sio64[out * 2 + 1] = size
                s64[out * 8] = name_addr[i]
                s32[out * 16 + 2] = namelen
                out += 1
            sent = 0
            while sent < out:
                done = sendmmsg(fd, sptr + sent * 64, out - sent, 0)
                if done <= 0:
                    if ctypes.get_errno() in (errno.EAGAIN, errno.EINTR):
                        break  # drop the rest, as a loaded server must
                    break
                sent += done
            if n < batch:
                return

    loop.add_reader(fd, readable)


def serve(variant: str, port: int, serve_args: list[str]) -> None:
    import uvloop

    view = build_view(serve_args)

    async def main():
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        sock = udp_socket(port)
        if variant == "flat":
            await loop.create_datagram_endpoint(lambda: Flat(view), sock=sock)
        elif variant == "echo":
            await loop.create_datagram_endpoint(Echo, sock=sock)
        elif variant == "drain":
            serve_drain(loop, sock, view)
        elif variant == "mmsg":
            serve_mmsg(loop, sock, view)
        else:
            raise SystemExit(f"unknown variant {variant}")
        print(f"variant {variant} answering on 127.0.0.1 port {port}", flush=True)
        await stop.wait()

    uvloop.run(main())


# -- the driver -------------------------------------------------------------------------------


def compare(args) -> int:
    import benchlib as bl
    import run

    bl.install_deadline(120 + 3 * len(args.variants) * args.rounds * (args.duration + 15 + args.wait_quiet))
    procs = bl.Processes()
    import shutil
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="pidns-variants-"))
    try:
        cluster = bl.generate_cluster(args.pods)
        pod_file, query_file = work / "pods.json", work / "queries.bin"
        bl.write_pod_file(cluster, pod_file)
        bl.build_queries(cluster, query_file)
        serve_args = run.server_argv(pod_file, cluster.cidr4, 0)[4:]  # the serve flags only
        servers = {}
        for variant in args.variants:
            port = bl.free_port()
            if variant in ("app", "batched"):
                argv = run.server_argv(pod_file, cluster.cidr4, port) + ["--udp-frontend", "uvloop" if variant == "app" else "batched"]
            else:
                argv = [sys.executable, __file__, "serve", "--variant", variant, "--port", str(port), "--", *serve_args]
            proc = procs.start(variant, argv, work / f"{variant}.log")
            if variant == "echo":
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and "answering" not in (work / "echo.log").read_text():
                    if proc.poll() is not None:
                        raise bl.BenchError(bl.tail(work / "echo.log"))
                    time.sleep(0.05)
            else:
                bl.wait_answering(port, proc, time.monotonic(), 60, work / f"{variant}.log", variant)
                problems = run.sanity_check(cluster, {variant: port})
                if problems:
                    raise bl.BenchError("\n".join(problems))
            servers[variant] = (port, proc)
        if args.knot:
            export = procs.start(
                "export",
                run.server_argv(pod_file, cluster.cidr4, None, "export-zone") + ["--output-dir", str(work / "zones")],
                work / "export.log",
            )
            export.wait(120)
            port = bl.free_port()
            conf = run.knot_conf(work, port, sorted((work / "zones").glob("*.zone")))
            knot = procs.start("knot", ["knotd", "-c", str(conf)], work / "knot.log")
            bl.wait_answering(
                port, knot, time.monotonic(), 60, work / "knot.log", "knot", bl.zone_file_serial(work / "zones" / f"{bl.ZONE}.zone")
            )
            servers["knot"] = (port, knot)
        opts = ["-T", str(args.threads), "-c", str(args.clients), "-q", str(args.outstanding), "-t", "2"]
        results: dict[str, list] = {v: [] for v in servers}
        for rnd in range(args.rounds):
            for variant, (port, proc) in servers.items():
                r = bl.run_clean(procs, f"{variant}-{rnd}", port, query_file, args.duration, proc.pid, opts, work, quiet=args.wait_quiet)
                results[variant].append(r)
                print(
                    f"round {rnd + 1} {variant:6} {r.qps:>9,.0f} qps  server CPU {r.server_cpu:3.0f}%  {r.server_us_per_query:5.2f} us/query  "
                    f"dnsperf {r.dnsperf_cpu:3.0f}%  other {r.other_cpu:3.0f}%  lost {r.lost}  attempts {r.attempts}",
                    flush=True,
                )
        print()
        print(f"{args.pods:,} pods, dnsperf {' '.join(opts)} -l {args.duration:g}, {args.rounds} rounds; best round per variant")
        print("| variant | qps (best) | qps (mean) | server CPU µs/query (best) | vs app |")
        print("|---|---|---|---|---|")
        app_best = max(r.qps for r in results["app"]) if "app" in results else None
        for variant, rs in results.items():
            best = max(r.qps for r in rs)
            mean = sum(r.qps for r in rs) / len(rs)
            us = min(r.server_us_per_query for r in rs)
            rel = f"{best / app_best:.2f}x" if app_best else ""
            print(f"| {variant} | {best:,.0f} | {mean:,.0f} | {us:.2f} | {rel} |")
        return 0
    except bl.BenchError as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        own, rest = sys.argv[2:], []
        if "--" in own:
            own, rest = own[: own.index("--")], own[own.index("--") + 1 :]
        p = argparse.ArgumentParser(prog="udp_variants.py serve")
        p.add_argument("--variant", required=True, choices=VARIANTS)
        p.add_argument("--port", type=int, required=True)
        a = p.parse_args(own)
        serve(a.variant, a.port, rest)
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pods", type=int, default=10_000)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--variants", type=lambda s: s.split(","), default=list(VARIANTS))
    p.add_argument("--no-knot", dest="knot", action="store_false")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--outstanding", type=int, default=100)
    p.add_argument("--wait-quiet", type=float, default=60.0, help="wait up to this long for an idle machine before each run")
    return compare(p.parse_args())


if __name__ == "__main__":
    sys.exit(main())
