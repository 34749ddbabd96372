"""The running server: builds store, registry and sources from a Config, listens, shuts down gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import socket
import time
from typing import TYPE_CHECKING

from . import __version__
from .appstatus import AppStatus
from .config import Config
from .model import Source
from .registry import Registry, RegistrySettings
from .registry.claims import Claim
from .registry.conflicts import Conflict, subject_text
from .serve import signals
from .serve.listeners import BindError, BoundSockets, bind_all, shown
from .serve.tcppool import TcpConnections, TcpLimits
from .serve.transport import Handler, Reply
from .serve.udpfront import UdpListener, serve_udp
from .sources.filesource import HostsFileSource, PodFileSource, RecordsFileSource
from .sources.filewatch import WatchedFile
from .sources.podfile import StartedPodFile
from .zone import names
from .zone.answer import answer
from .zone.fastpath import fast_answer, respond
from .zone.store import ZoneSettings, ZoneStore, wait_for_time_serial

if TYPE_CHECKING:
    from .ops.http import HttpServer
    from .sources.kubeevents import EventPoster
    from .transfer import TransferService, TransferSettings

log = logging.getLogger("pod_identity_dns")

FINAL_READ_SECONDS = 0.05
TCP_DRAIN_SECONDS = 2.0  # after the listeners close, a TCP query half received (or a reply stream) may still complete
TCP_BACKLOG = 1024  # connections the kernel queues before we accept them (capped by net.core.somaxconn)


class App:
    def __init__(
        self,
        config: Config,
        observer=None,
        first_pods: StartedPodFile | None = None,
        sockets: BoundSockets | None = None,
        early_signals: signals.EarlySignals | None = None,
        transfers: bool = True,
    ):
        """`first_pods`: the pod file, if its decoding started already (start_pod_file); `sockets`: the
        listeners, if bound already (bind_all); `early_signals`: what arrived before the loop ran;
        `transfers`: serve zone transfers and send NOTIFY as configured (export-zone does not)."""
        self.config = config
        self._first_pods = first_pods
        self.store = ZoneStore(
            ZoneSettings(config.zones, config.reverse_cidrs, config.ttl, config.negative_ttl, config.ns_name, config.ns_addresses)
        )
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
                srv_records=config.srv_records,
            ),
        )
        self.observer = observer
        self.transfer: TransferService | None = None  # zone transfers, TSIG and NOTIFY, when configured
        if transfers and config.transfers_configured:
            self.transfer = self._transfer_service()
        self.sources: list[Source] = []
        self.listening = False
        self.stopping = False
        self.exit_code = 0  # 1 once a source failed for good (see _source_ended)
        self.tcp = TcpConnections(
            TcpLimits(config.tcp_idle_timeout, config.tcp_max_connections, config.tcp_max_per_client, config.tcp_max_lifetime)
        )
        self.status = AppStatus(self)
        if observer is not None:
            observer.attach(self.status)
        self.http: HttpServer | None = None  # metrics and probes, once serving
        self._sockets = sockets
        self._early_signals = early_signals
        self._udp: list[UdpListener] = []
        self.udp_frontends: list[str] = []  # "batched" or "uvloop", per DNS address
        self._tcp_servers: list[asyncio.AbstractServer] = []
        self._tasks: list[asyncio.Task] = []
        self._reload: asyncio.Task | None = None
        self._reload_again = False  # a SIGHUP came while the files were being re-read
        self.bound: list[tuple[str, int]] = []
        self._stop = asyncio.Event()

    def _transfer_service(self) -> TransferService:
        """The transfer engine over the store, reporting to the metrics' plain counters (when there are metrics)."""
        from .transfer import TransferService
        from .transfer.counting import CountingObserver

        store, counting = self.store, None
        if self.observer is not None:
            counters = self.observer.transfer_stats()
            for zone in store.zones.values():
                counters.journal(zone.name, 0, 0)
            counting = CountingObserver(counters)
        return TransferService(transfer_settings(self.config), store, lambda query, tcp: respond(query, store, tcp), counting)

    @property
    def ready(self) -> bool:
        """Readiness: every source synced, listeners up, not shutting down, and with zone transfers the
        first warm-up of their chunks done (bounded: TransferService.warming_up)."""
        warming = self.transfer is not None and self.transfer.warming_up
        return self.store.synced and self.listening and not self.stopping and not warming

    # -- sources -------------------------------------------------------

    def _on_reload(self, kind: str, result: str, stats=None) -> None:
        """A file source loaded (result "success" or "error"); a pod file's load also says what it skipped."""
        if self.observer is not None:
            self.observer.file_reload(kind, result)
            if stats is not None:
                self.observer.file_items(kind, stats)

    async def _room_for_a_time_serial(self) -> None:
        """Before a file reload is applied: wait (a second at most, usually not at all) until the clock
        has passed every zone's serial, so that its serial is the time and a restart cannot undercut it."""
        while (delay := wait_for_time_serial(self.store.zones.values(), time.time())) > 0:
            await asyncio.sleep(delay)

    def make_sources(self) -> list[Source]:
        """The configured sources: the files, else the Kubernetes API."""
        config = self.config
        sources: list[Source] = []
        if config.pods_file:
            started, self._first_pods = self._first_pods, None
            sink = self.registry.sink("pods-file")
            sources.append(
                PodFileSource(config.pods_file, sink, config.reload_interval, self._on_reload, started, config.pods_file_memory_limit)
            )
        if config.hosts_file:
            sources.append(
                HostsFileSource(
                    config.hosts_file,
                    self.registry.replace_static_steps,
                    config.reload_interval,
                    self._on_reload,
                    config.hosts_file_max_size,
                )
            )
        if config.records_file:
            sources.append(
                RecordsFileSource(
                    config.records_file, self.registry.replace_records, config.reload_interval, self._on_reload, config.zones[0], config.ttl
                )
            )
        if not config.pods_file:
            from .sources.kube import KubeSettings
            from .sources.kubesource import KubernetesSource

            settings = KubeSettings(
                kubeconfig=config.kubeconfig,
                context=config.context,
                namespaces=config.namespaces,
                label_selector=config.label_selector,
            )
            kube_observer = self.observer.kube_observer() if self.observer is not None else None
            events = None
            if config.events:
                from .sources.kubeevents import EventPoster, EventSettings

                events = EventPoster(EventSettings(reporting_instance=config.server_id), kube_observer)
                self.registry.book.listeners.append(functools.partial(report_conflict, events))
            sources.append(KubernetesSource(settings, self.registry.sink, kube_observer, events))
        return sources

    @property
    def files(self) -> list[WatchedFile]:
        """The watched files of the file sources."""
        return [watched for source in self.sources if (watched := getattr(source, "watched", None)) is not None]

    async def load_sources(self) -> None:
        """Make and start every source: the first loads (SourceError propagates: exit code 2 before listening)."""
        self.sources = self.make_sources()
        if self.config.pods_file:  # the file sources alone: time serials (see wait_for_time_serial)
            for watched in self.files:
                watched.before_apply = self._room_for_a_time_serial
        for source in self.sources:
            await source.start()

    async def start_sources(self) -> None:
        """Load every source, then keep each current in a task of its own."""
        await self.load_sources()
        for source in self.sources:
            task = asyncio.create_task(source.run(), name=f"source-{source.name}")
            task.add_done_callback(functools.partial(self._source_ended, source))
            self._tasks.append(task)

    def _source_ended(self, source: Source, task: asyncio.Task) -> None:
        """A source keeps retrying every failure it knows; if its run still ends, stop with exit code 1.

        Serving an ever older state without saying so is the worst outcome; a
        restart by the orchestrator is visible and loads everything afresh.
        """
        if task.cancelled() or self.stopping:
            return
        error = task.exception()
        ended = getattr(source, "ended", None)
        if ended is not None:
            ended(error)
        else:
            log.error(
                "the %s source stopped (%s); shutting down",
                source.name,
                f"{type(error).__name__}: {error}" if error else "it returned",
                exc_info=error,
            )
        self.exit_code = 1
        self.request_stop()

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

        handler: Handler = answer_query if self.transfer is None else transfer_handler(store, self.transfer)
        if self.config.log_queries:
            from .ops.querylog import logging_handler

            handler = logging_handler(handler)
        if self.observer is not None:
            handler = self.observer.wrap_handler(handler, family, tcp)
        return handler

    def tcp_connections(self) -> int:
        return len(self.tcp.open)

    def bind(self) -> BoundSockets:
        """Bind every listener now (UDP and TCP of each DNS address, then HTTP); BindError names the one that failed."""
        if self._sockets is None:
            metrics = self.config.metrics_listen if self.observer is not None else None
            self._sockets = bind_all(self.config.listen, metrics, reuse_port=self.config.workers > 1)
        return self._sockets

    async def listen(self) -> None:
        """Serve on every bound socket, then say so: nothing is announced before everything listens."""
        sockets = self.bind()
        loop = asyncio.get_running_loop()
        for bound in sockets.dns:
            factory = self.tcp.protocol_factory(self.handler(bound.family, tcp=True))
            try:
                server = await loop.create_server(factory, sock=bound.tcp, backlog=TCP_BACKLOG)
            except OSError as exc:  # two servers binding the same port at once: the second learns it here
                raise BindError(f"cannot listen on {shown(bound.host)} port {bound.port} (TCP): {exc.strerror or exc}") from exc
            self._tcp_servers.append(server)
            udp_handler = self.handler(bound.family, tcp=False)
            udp, frontend = await serve_udp(loop, bound.udp, udp_handler, self.config.udp_frontend, self.config.udp_batch)
            self._udp.append(udp)
            self.udp_frontends.append(frontend)
            self.bound.append((bound.host, bound.port))
        http_address = None
        if sockets.http is not None and self.observer is not None:
            from .ops.http import HttpServer

            self.http = http = HttpServer(
                self.status, self.observer.exposition, self.config.metrics_max_connections, self.config.metrics_idle_timeout
            )
            try:
                http_address = await http.start(sockets.http)
            except OSError as exc:
                host, port = sockets.http.getsockname()[:2]
                raise BindError(f"cannot listen on {shown(host)} port {port} (HTTP): {exc.strerror or exc}") from exc
        if self.transfer is not None:  # NOTIFY once the secondaries can reach us, before we say we listen
            try:
                await self.transfer.start()
            except OSError as exc:
                raise BindError(f"cannot open the NOTIFY socket: {exc.strerror or exc}") from exc
        self.listening = True
        for (host, port), frontend in zip(self.bound, self.udp_frontends):
            how = f"batched, up to {self.config.udp_batch} per system call" if frontend == "batched" else "uvloop datagrams"
            log.info("answering DNS on %s port %d (UDP and TCP; UDP %s)", host, port, how)
        if http_address is not None:
            log.info("metrics and probes on http://%s:%d/", shown(http_address[0]), http_address[1])

    # -- signals -------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """Every signal of serve.signals handled on the loop; those that came before it are acted on now."""
        loop = asyncio.get_running_loop()
        for signum in signals.HANDLED_SIGNALS:
            loop.add_signal_handler(signum, self.on_signal, signum)
        if self._early_signals is not None:
            for early in self._early_signals.take():
                self.on_signal(early)

    def on_signal(self, signum: int) -> None:
        if signum in signals.STOP_SIGNALS:
            self.request_stop()
        elif signum == signal.SIGHUP:
            self.reload_files_now()
        elif signum == signal.SIGQUIT:
            log.warning("SIGQUIT: the stack of every thread and task follows; still serving\n%s", signals.stacks_text())
        else:
            log.info("%s: ignored (no action is bound to it)", signals.name(signum))

    def reload_files_now(self) -> None:
        """SIGHUP: re-read every watched file at once, changed or not; a broken one keeps its last good data."""
        if not self.files:
            log.info("SIGHUP: no file to re-read (pods come from the Kubernetes API)")
            return
        if self._reload is not None and not self._reload.done():
            log.info("SIGHUP: the files are being re-read already; they are read once more after that")
            self._reload_again = True
            return
        log.info("SIGHUP: re-reading %s now", ", ".join(f"the {watched.kind} file" for watched in self.files))
        self._reload = asyncio.create_task(self._reload_files(), name="sighup-reload")
        self._tasks.append(self._reload)

    async def _reload_files(self) -> None:
        self._reload_again = True
        while self._reload_again:  # a SIGHUP during a re-read (a file may have changed since it was read) reads them again
            self._reload_again = False
            for watched in self.files:
                try:
                    await watched.reload_now()
                except Exception:  # reload_now logs a broken file itself; this is a bug, and must not stop the others
                    log.exception("re-reading %s failed", watched.path)

    def request_stop(self) -> None:
        if self._stop.is_set():
            log.warning("second stop signal: exiting at once")
            raise SystemExit(0)
        self.stopping = True  # readiness fails from this moment, not a loop turn later
        self._stop.set()

    # -- lifecycle -----------------------------------------------------

    async def run(self, install_signals: bool = True) -> None:
        """Start everything, serve until SIGTERM/SIGINT, then shut down gracefully."""
        if install_signals:
            self.install_signal_handlers()
        try:
            self.bind()
            await self.start_sources()
            if not self._stop.is_set():
                await self.listen()
                await self._stop.wait()
            await self.shutdown()
        finally:
            if self._sockets is not None:
                self._sockets.close()  # those never handed to a server (a start that failed)

    async def shutdown(self) -> None:
        """Lame duck (not ready, still answering), then close listeners, drain TCP, stop the rest."""
        self.stopping = True
        if self.config.lameduck > 0 and self.listening:
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
        cut = await self.tcp.drain(TCP_DRAIN_SECONDS)
        if cut:
            log.warning("cut %d TCP connections that had not finished after %.1f s", cut, TCP_DRAIN_SECONDS)
        if self.transfer is not None:
            await self.transfer.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for server in self._tcp_servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=2)
        if self.http is not None:
            await self.http.stop()
        log.info("stopped")


def report_conflict(events: EventPoster, conflict: Conflict) -> None:
    """A new conflict, told to the Event poster when a pod lost (a static hosts entry is no object to tell)."""
    loser, winner = conflict.loser, conflict.winner
    if isinstance(loser, Claim):
        events.report(
            conflict.kind, subject_text(conflict.subject).rstrip("."), loser.pod, winner.pod if isinstance(winner, Claim) else None
        )


def transfer_settings(config: Config) -> TransferSettings:
    """The transfer engine's settings from the flags (cli checks them before binding: check_settings)."""
    from .transfer import TransferSettings

    return TransferSettings(
        key_files=config.tsig_key_files,
        transfer_keys=config.transfer_keys,
        allow_unsigned=config.transfer_allow_unsigned,
        ixfr_journal=config.ixfr_journal,
        ixfr_journal_bytes=config.ixfr_journal_bytes,
        notify=config.notify,
        notify_key=config.notify_key,
    )


def transfer_handler(store: ZoneStore, transfer: TransferService) -> Handler:
    """The answer with zone transfers: the fast path first (it never answers a transfer or a signed
    query), then the transfer engine for what may concern it, else the full answer path."""
    concerns, handle = transfer.may_concern, transfer.handle

    def answer_query(query: bytes, tcp: bool, peer) -> Reply:
        reply = fast_answer(query, store, tcp)
        if reply is not None:
            return reply
        if concerns(query):
            transferred = handle(query, peer, tcp)
            if transferred is not None:
                return transferred
        return answer(query, store, tcp)

    return answer_query
