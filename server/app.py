"""The running server: builds store, registry and sources from a Config, listens, shuts down gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import socket

import dnslib

from . import __version__
from .config import Config
from .registry import Registry, RegistrySettings
from .serve.transport import Handler, TcpConnections, UdpProtocol
from .sources.filewatch import WatchedFile
from .sources.hostsfile import parse_hosts_file
from .sources.podfile import StartedPodFile, parse_pod_file, pod_file_batches
from .zone import names
from .zone.fastpath import respond
from .zone.store import ZoneSettings, ZoneStore

log = logging.getLogger("pod_identity_dns")
query_log = logging.getLogger("pod_identity_dns.queries")

UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
FINAL_READ_SECONDS = 0.05
TCP_DRAIN_SECONDS = 2.0  # after the listeners close, a TCP query half received may still complete


def _udp_socket(host: str, port: int, family: int, reuse_port: bool) -> socket.socket:
    """A bound UDP socket; IPv6 ones are IPv6-only so [::] and 0.0.0.0 can share a port."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        # Room for bursts; the kernel caps this at net.core.rmem_max.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class App:
    def __init__(self, config: Config, observer=None, first_pods: StartedPodFile | None = None):
        """`first_pods`: the pod file, if its decoding started already (start_pod_file)."""
        self.config = config
        self._first_pods = first_pods
        self.store = ZoneStore(ZoneSettings(config.zones, config.reverse_cidrs, config.ttl, config.negative_ttl, config.ns_name))
        self.store.chaos_txt = {
            names.to_wire("version.bind"): f"pod-identity-dns {__version__}",
            names.to_wire("id.server"): config.server_id,
            names.to_wire("hostname.bind"): config.server_id,
        }
        self.registry = Registry(
            self.store,
            RegistrySettings(
                zone=config.zones[0],
                name_template=config.name_template,
                publish_not_ready=config.publish == "not-ready",
                fallback_ptr=config.fallback_ptr,
                cluster_domain=config.cluster_domain,
            ),
        )
        self.observer = observer
        self.files: list[WatchedFile] = []
        self.listening = False
        self.stopping = False
        self.exit_code = 0  # 1 once a source failed for good (see _kube_watch_ended)
        self._udp: list[asyncio.DatagramTransport] = []
        self._tcp_servers: list[asyncio.AbstractServer] = []
        self._tcp: list[TcpConnections] = []
        self._tasks: list[asyncio.Task] = []
        self.bound: list[tuple[str, int]] = []
        self._stop = asyncio.Event()

    @property
    def ready(self) -> bool:
        """Readiness: every source synced, listeners up, not shutting down."""
        return self.store.synced and self.listening and not self.stopping

    # -- sources -------------------------------------------------------

    def _on_reload(self, kind: str, result: str) -> None:
        if self.observer is not None:
            self.observer.file_reload(kind, result)

    def load_files(self) -> None:
        """Read the pod and hosts files once; SourceError propagates so start-up fails clearly."""
        config = self.config
        if config.pods_file:
            sink = self.registry.sink("pods-file")

            started, self._first_pods = self._first_pods, None
            memory_limit = config.pods_file_memory_limit

            def load_in_batches(path: str):
                # The source is empty: each batch is applied as the child decodes the next.
                load = started.batches if started else pod_file_batches(path, memory_limit)
                for batch in load:
                    sink.update(batch, [])
                return load.stats

            def pods_loaded(kind: str, result: str, stats=None) -> None:
                self._on_reload(kind, result)
                file_items = getattr(self.observer, "file_items", None)  # the metrics of what a load skipped
                if stats is not None and file_items is not None:
                    file_items(kind, stats)

            self.files.append(
                WatchedFile(
                    "pods",
                    config.pods_file,
                    functools.partial(parse_pod_file, memory_limit=memory_limit),
                    sink.replace_all,
                    pods_loaded,
                    load_in_batches,
                    started.signature if started else None,
                    report_of=lambda content: content.stats,
                )
            )
        if config.hosts_file:
            parse_hosts = functools.partial(parse_hosts_file, max_size=config.hosts_file_max_size)
            self.files.append(WatchedFile("hosts", config.hosts_file, parse_hosts, self.registry.replace_static, self._on_reload))
        for watched in self.files:
            watched.load_now()
        if config.pods_file:
            sink.set_synced(True)

    async def start_kubernetes(self) -> None:
        """Load the client configuration now (a broken one is a SourceError: exit 2 before listening), then watch."""
        from .sources.kube import KubeSettings, PodWatcher, load_client_config

        config = self.config
        settings = KubeSettings(
            kubeconfig=config.kubeconfig,
            context=config.context,
            namespaces=config.namespaces,
            label_selector=config.label_selector,
        )
        client_config = await load_client_config(settings)
        kube_observer = self.observer.kube_observer() if self.observer is not None else None
        watcher = PodWatcher(settings, self.registry.sink, kube_observer)
        task = asyncio.create_task(watcher.run(client_config), name="kubernetes-watch")
        task.add_done_callback(self._kube_watch_ended)
        self._tasks.append(task)

    def _kube_watch_ended(self, task: asyncio.Task) -> None:
        """The watch retries every failure it knows; if it still ends, stop with exit code 1.

        Serving an ever older state without saying so is the worst outcome; a
        restart by the orchestrator is visible and lists the cluster afresh.
        """
        if task.cancelled() or self.stopping:
            return
        error = task.exception()
        log.error(
            "the Kubernetes watch stopped (%s); shutting down so that a restart lists the cluster afresh",
            f"{type(error).__name__}: {error}" if error else "it returned",
            exc_info=error,
        )
        self.exit_code = 1
        self.request_stop()

    async def start_sources(self) -> None:
        self.load_files()
        for watched in self.files:
            self._tasks.append(asyncio.create_task(watched.watch(self.config.reload_interval), name=f"watch-{watched.kind}"))
        if not self.config.pods_file:
            await self.start_kubernetes()

    async def wait_synced(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.store.synced and loop.time() < deadline:
            await asyncio.sleep(0.05)
        return self.store.synced

    # -- serving -------------------------------------------------------

    def handler(self, family: int = socket.AF_INET, tcp: bool = False) -> Handler:
        """The per-query function of one listener and transport: answer, optional query log, metrics."""
        store = self.store

        def answer_query(query: bytes, tcp: bool, peer) -> bytes | None:
            return respond(query, store, tcp)

        handler: Handler = answer_query
        if self.config.log_queries:
            handler = logging_handler(handler)
        if self.observer is not None:
            handler = self.observer.wrap_handler(handler, family, tcp)
        return handler

    def tcp_connections(self) -> int:
        return sum(len(tcp.open) for tcp in self._tcp)

    async def listen(self) -> None:
        loop = asyncio.get_running_loop()
        for host, port in self.config.listen:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            reuse_port = self.config.workers > 1
            tcp = TcpConnections(self.handler(family, tcp=True), self.config.tcp_idle_timeout, self.config.tcp_max_connections)
            server = await loop.create_server(tcp.protocol, host, port, family=family, reuse_port=reuse_port or None)
            # Port 0 (tests): UDP takes the port TCP got, so both share one number.
            port = server.sockets[0].getsockname()[1]
            udp_handler = self.handler(family, tcp=False)
            transport, _ = await loop.create_datagram_endpoint(
                functools.partial(UdpProtocol, udp_handler), sock=_udp_socket(host, port, family, reuse_port)
            )
            self._tcp_servers.append(server)
            self._tcp.append(tcp)
            self._udp.append(transport)
            self.bound.append((host, port))
            log.info("answering DNS on %s port %d (UDP and TCP)", host, port)
        self.listening = True

    def request_stop(self) -> None:
        if self._stop.is_set():
            log.warning("second stop signal: exiting at once")
            raise SystemExit(0)
        self.stopping = True  # readiness fails from this moment, not a loop turn later
        self._stop.set()

    async def run(self, install_signals: bool = True) -> None:
        """Start everything, serve until SIGTERM/SIGINT, then shut down gracefully."""
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
        await self.start_sources()
        await self.listen()
        if self.observer is not None:
            await self.observer.start(self)
        await self._stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        """Lame duck (not ready, still answering), then close listeners, drain TCP, stop the rest."""
        self.stopping = True
        if self.config.lameduck > 0:
            log.info("shutting down: not ready, still answering for %.1f s (lame duck)", self.config.lameduck)
            await asyncio.sleep(self.config.lameduck)
        log.info("closing the DNS listeners")
        # Queries already in the socket buffers when that line is written are still read and answered.
        await asyncio.sleep(FINAL_READ_SECONDS)
        for server in self._tcp_servers:
            server.close()
        for transport in self._udp:
            transport.close()
        self.listening = False
        cut = sum(await asyncio.gather(*(tcp.drain(TCP_DRAIN_SECONDS) for tcp in self._tcp)))
        if cut:
            log.warning("cut %d TCP connections that had not finished after %.1f s", cut, TCP_DRAIN_SECONDS)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for server in self._tcp_servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=2)
        if self.observer is not None:
            await self.observer.stop()
        log.info("stopped")


def logging_handler(handler: Handler) -> Handler:
    """`handler` that also logs each query: name, type, rcode, transport, peer (--log-queries)."""

    def logged(query: bytes, tcp: bool, peer) -> bytes | None:
        reply = handler(query, tcp, peer)
        qname, qtype = _question(query)
        if reply is None:
            outcome = "no reply"
        else:
            rcode = reply[3] & 0xF
            outcome = f"{dnslib.RCODE.get(rcode, rcode)} {len(reply)} bytes"
        address = f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"
        query_log.info("%s %s from %s over %s: %s", qname, qtype, address, "tcp" if tcp else "udp", outcome)
        return reply

    return logged


def _question(query: bytes) -> tuple[str, str]:
    """The first question's name and type as text, for the query log ("?" when unreadable)."""
    end = names.labels_end(query, 12) if len(query) > 12 else -1
    if end < 0 or end + 2 > len(query):
        return "?", "?"
    qtype = int.from_bytes(query[end : end + 2], "big")
    return names.to_text(query[12:end]), dnslib.QTYPE.get(qtype, f"TYPE{qtype}")
