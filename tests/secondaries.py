"""Real secondaries for the transfer engine: a small asyncio primary serving TransferService over the
fake store, and Debian's knotd and named transferring from it (or from the real server) with TSIG.

Everything listens on 127.0.0.1 on free ports, runs in its own directory, and
dies with the test process (PR_SET_PDEATHSIG) if a fixture's finally is never reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig

from server.transfer import TransferObserver, TransferService, TransferSettings
from server.transfer.keys import TsigKey, read_key_file
from tests.fakestore import FakeStore

SBIN = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def binary(name: str, package: str) -> str:
    found = shutil.which(name, path=SBIN)
    assert found, f"{name} is missing: run scripts/setup-tests.sh (apt-get install {package})"
    return found


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def generate_keys(directory: Path, *names: str, algorithm: str = "hmac-sha256") -> Path:
    """One key file, 0600, written by BIND's own tsig-keygen (so its real output is what gets parsed)."""
    tool = binary("tsig-keygen", "bind9")
    text = "".join(subprocess.run([tool, "-a", algorithm, name], check=True, capture_output=True, text=True).stdout for name in names)
    path = directory / "tsig.keys"
    path.write_text(text)
    path.chmod(0o600)
    return path


def keys_of(key_file: Path) -> dict[str, TsigKey]:
    """The keys of a key file by name without the final dot."""
    return {k.name.rstrip("."): k for k in read_key_file(str(key_file))}


def write_pod_list(path: Path, pods: list[dict]) -> Path:
    """A pod file as `kubectl get pods -A -o json` writes it."""
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": pods}))
    return path


def axfr_lines(port: int, zone: str, key: TsigKey | None = None, timeout: float = 10.0) -> list[str]:
    """The zone as transferred by dnspython's AXFR (TSIG-checked when a key is given): sorted zone-file lines,
    the SOA once."""
    kwargs = {"keyring": key.key, "keyname": key.key.name, "keyalgorithm": key.key.algorithm} if key else {}
    lines = set()
    for message in dns.query.xfr("127.0.0.1", zone, port=port, timeout=timeout, lifetime=timeout * 3, relativize=False, **kwargs):
        for rrset in message.answer:
            for rdata in rrset:
                lines.add(f"{rrset.name.to_text()} {rrset.ttl} IN {dns.rdatatype.to_text(rrset.rdtype)} {rdata.to_text()}")
    return sorted(lines)


def ask(port: int, name: str, rdtype: str) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", timeout=3, port=port)


def answer_of(message: dns.message.Message) -> tuple:
    """What must be equal between primary and secondary: rcode, AA, the answer; for negatives the SOA."""
    answer = sorted((r.name.to_text(), r.rdtype, r.ttl, sorted(d.to_text() for d in r)) for r in message.answer)
    negative = sorted((r.name.to_text(), r.rdtype, sorted(d.to_text() for d in r)) for r in message.authority if not message.answer)
    return message.rcode(), bool(message.flags & dns.flags.AA), answer, negative


def converged(secondary: Secondary, port: int) -> bool:
    """Whether the secondary serves every one of its zones at the serial the server at `port` serves."""
    return all(secondary.serial(zone) == ask(port, zone, "SOA").answer[0][0].serial for zone in secondary.zones)


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Events(TransferObserver):
    """Every transfer and NOTIFY outcome the primary saw, for the tests to inspect."""

    def __init__(self):
        self.transfers = []
        self.notifies = []
        self.lock = threading.Lock()

    def transfer_done(self, event):
        with self.lock:
            self.transfers.append(event)

    def notify_answered(self, zone, target, rcode):
        with self.lock:
            self.notifies.append((zone, target, rcode))

    def find(self, **match) -> list:
        with self.lock:
            return [e for e in self.transfers if all(getattr(e, k) == v for k, v in match.items())]


class Primary:
    """The fake store behind a TransferService on UDP and TCP, in a thread with its own event loop."""

    def __init__(self, store: FakeStore, settings: TransferSettings, port: int | None = None):
        self.store = store
        self.settings = settings
        self.port = port or free_port()
        self.events = Events()
        self.loop = asyncio.new_event_loop()
        self.service: TransferService | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._servers: list = []

    def __enter__(self) -> Primary:
        self._thread.start()
        self.call(self._start)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.loop.is_running():
            with contextlib.suppress(Exception):
                self.call(self._stop, timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)

    def call(self, function: Callable, *args, timeout: float = 30):
        """Run `function(*args)` (a coroutine function or a plain one) on the primary's loop; its result."""

        async def run():
            result = function(*args)
            return await result if asyncio.iscoroutine(result) else result

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def commit(self, *args, **kwargs):
        return self.call(lambda: self.store.commit(*args, **kwargs))

    async def _start(self) -> None:
        self.service = TransferService(self.settings, self.store, self.store.answer, self.events)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=("127.0.0.1", self.port))
        self._servers.append(transport)
        self._servers.append(await asyncio.start_server(self._tcp, "127.0.0.1", self.port))
        await self.service.start()

    async def _stop(self) -> None:
        if self.service is not None:
            await self.service.stop()
        for server in self._servers:
            server.close()

    def reply(self, query: bytes, peer: tuple, tcp: bool):
        assert self.service is not None
        if self.service.may_concern(query):
            reply = self.service.handle(query, peer, tcp)
            if reply is not None:
                return reply
        return self.store.answer(query, tcp)

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                reply = self.reply(await reader.readexactly(size), peer, True)
                if reply is None:
                    continue
                if isinstance(reply, bytes):
                    writer.write(len(reply).to_bytes(2, "big") + reply)
                    await writer.drain()
                    continue
                try:
                    async for message in reply:
                        writer.write(len(message).to_bytes(2, "big") + message)
                        await writer.drain()
                finally:
                    await reply.aclose()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, primary: Primary):
        self.primary = primary

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        reply = self.primary.reply(data, addr, False)
        if isinstance(reply, bytes):
            self.transport.sendto(reply, addr)


class Secondary:
    """A secondary server process in its own directory; a context manager that stops it."""

    name = "secondary"

    def __init__(self, directory: Path, primary_port: int, zones: list[str]):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.primary_port = primary_port
        self.zones = zones
        self.port = free_port()
        self.log = self.dir / "log"
        self.proc: subprocess.Popen | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv(), cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=_die_with_parent
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_text()}")
            if self.ask(self.zones[0], "SOA", timeout=0.2) is not None:
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer:\n{self.log_text()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)  # a paused one must hear the SIGTERM
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def pause(self) -> None:
        """SIGSTOP: the process hears nothing (NOTIFYs wait in its socket buffer) until resume()."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def ask(self, name: str, rdtype: str, timeout: float = 2.0) -> dns.message.Message | None:
        try:
            return dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", timeout=timeout, port=self.port)
        except (dns.exception.Timeout, OSError):
            return None

    def serial(self, zone: str) -> int | None:
        reply = self.ask(zone, "SOA")
        if reply is None or reply.rcode() != dns.rcode.NOERROR or not reply.answer:
            return None
        return reply.answer[0][0].serial

    def wait_for(self, check: Callable[[], bool], timeout: float = 15.0) -> float:
        """Seconds until `check()` held; AssertionError with the log if it never did."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if check():
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: condition not met within {timeout} s; log:\n{self.log_text()[-4000:]}")


def _key_blocks(key_file: Path, names: list[str]) -> list[tuple[str, str, str]]:
    """(name, algorithm, base64 secret) of the named keys (for Knot's YAML, which has its own syntax)."""
    import base64

    keys = {k.name.rstrip("."): k for k in read_key_file(str(key_file))}
    return [(n, keys[n].algorithm, base64.b64encode(keys[n].key.secret).decode()) for n in names]


class Knot(Secondary):
    name = "knotd"

    def __init__(self, directory: Path, primary_port: int, zones: list[str], key_file: Path, transfer_key: str, notify_key: str):
        super().__init__(directory, primary_port, zones)
        self.key_file, self.transfer_key, self.notify_key = key_file, transfer_key, notify_key

    def argv(self) -> list[str]:
        keys = "".join(
            f"  - id: {name}\n    algorithm: {algorithm}\n    secret: {secret}\n"
            for name, algorithm, secret in _key_blocks(self.key_file, sorted({self.transfer_key, self.notify_key}))
        )
        zones = "".join(f"  - domain: {zone}\n    master: primary\n    acl: notify-from-primary\n" for zone in self.zones)
        config = f"""\
server:
    rundir: "{self.dir}"
    listen: 127.0.0.1@{self.port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: info
database:
    storage: "{self.dir}/db"
key:
{keys}remote:
  - id: primary
    address: 127.0.0.1@{self.primary_port}
    key: {self.transfer_key}
acl:
  - id: notify-from-primary
    address: 127.0.0.1
    key: {self.notify_key}
    action: notify
template:
  - id: default
    storage: "{self.dir}/zones"
    zonefile-sync: -1
    zonefile-load: none
    journal-content: none
zone:
{zones}"""
        (self.dir / "knot.conf").write_text(config)
        return [binary("knotd", "knot"), "-c", str(self.dir / "knot.conf")]


class Bind(Secondary):
    name = "named"

    def __init__(self, directory: Path, primary_port: int, zones: list[str], key_file: Path, transfer_key: str, notify_key: str):
        super().__init__(directory, primary_port, zones)
        self.key_file, self.transfer_key, self.notify_key = key_file, transfer_key, notify_key

    def argv(self) -> list[str]:
        zones = "".join(
            f'zone "{zone}" {{ type secondary; file "{re.sub(r"[^a-z0-9.-]", "_", zone)}.db";'
            f' primaries {{ 127.0.0.1 port {self.primary_port} key "{self.transfer_key}"; }};'
            f' allow-notify {{ key "{self.notify_key}"; }}; }};\n'
            for zone in self.zones
        )
        config = f"""\
include "{self.key_file}";
options {{
    directory "{self.dir}";
    pid-file "{self.dir}/named.pid";
    session-keyfile "{self.dir}/session.key";
    managed-keys-directory "{self.dir}";
    listen-on port {self.port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
    allow-query {{ any; }};
}};
controls {{ }};
{zones}"""
        (self.dir / "named.conf").write_text(config)
        return [binary("named", "bind9"), "-g", "-4", "-n", "1", "-c", str(self.dir / "named.conf")]
