"""The HTTP side, on the server's own event loop: /metrics, /healthz, /readyz and /debug/identities.

Because it shares the loop with DNS, /healthz answering means the loop is alive.
It reads the server only through a ServerStatus (status.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

import orjson
from aiohttp import web

from .httpgate import ConnectionGate
from .status import ServerStatus

log = logging.getLogger("pod_identity_dns.http")

INDEX = b"""pod-identity-dns
/metrics            Prometheus metrics
/healthz            200 while the process and its event loop run
/readyz             200 when synced, listening and not shutting down; 503 otherwise
/debug/identities   served identities, static entries, PTRs and conflicts (JSON; ?ip=ADDR or ?name=NAME looks one up)
"""
# /debug/identities may be costly to build: one at a time, and at most about one a second.
IDENTITIES_INTERVAL = 1.0


class HttpServer:
    """One aiohttp server on a bound socket; `exposition(accept)` gives the /metrics body and its content type."""

    def __init__(
        self,
        status: ServerStatus,
        exposition: Callable[[str], tuple[bytes, str]],
        max_connections: int = 100,
        idle_timeout: float = 30.0,
    ):
        self.status = status
        self.exposition = exposition
        self.gate = ConnectionGate(max_connections, idle_timeout)
        self.idle_timeout = idle_timeout
        self.runner: web.AppRunner | None = None
        self.server: asyncio.AbstractServer | None = None
        self._identities_building = False
        self._identities_started: float | None = None

    def make_web_app(self) -> web.Application:
        web_app = web.Application()
        web_app.router.add_get("/", self.index)
        web_app.router.add_get("/metrics", self.metrics)
        web_app.router.add_get("/healthz", self.healthz)
        web_app.router.add_get("/readyz", self.readyz)
        web_app.router.add_get("/debug/identities", self.identities)
        return web_app

    async def start(self, sock: socket.socket) -> tuple[str, int]:
        """Serve on `sock` (bound, not yet listening); returns the address it is bound to."""
        # No access log: probes every few seconds would drown the useful lines. keepalive_timeout
        # closes connections idle between requests and before the first one.
        self.runner = web.AppRunner(
            self.make_web_app(), access_log=None, handle_signals=False, shutdown_timeout=1.0, keepalive_timeout=self.idle_timeout
        )
        await self.runner.setup()
        assert self.runner.server is not None
        loop = asyncio.get_running_loop()
        try:
            self.server = await loop.create_server(self.gate.factory(self.runner.server), sock=sock, backlog=128)
        except OSError:
            await self.runner.cleanup()
            raise
        host, port = sock.getsockname()[:2]
        return host, port

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), timeout=1)
            self.server = None

    # -- handlers --------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(body=INDEX, content_type="text/plain")

    async def metrics(self, request: web.Request) -> web.Response:
        body, content_type = self.exposition(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        status = self.status
        if status.ready:
            return web.Response(text="ready\n")
        reasons = status.not_ready_reasons()
        return web.Response(status=503, text="not ready: " + ", ".join(reasons or ["unknown"]) + "\n")

    async def identities(self, request: web.Request) -> web.Response:
        if "ip" in request.query or "name" in request.query:  # a lookup reads a few index entries: no limit
            return _json(await self.status.debug_identities(request.query))
        now = asyncio.get_running_loop().time()
        started = self._identities_started
        if self._identities_building or (started is not None and now - started < IDENTITIES_INTERVAL):
            return web.Response(
                status=429,
                text="too many requests: /debug/identities is built at most once a second, one at a time\n",
                headers={"Retry-After": "1"},
            )
        self._identities_building, self._identities_started = True, now
        try:
            body = await self.status.debug_identities(request.query)
        finally:
            self._identities_building = False
        return _json(body)


def _json(body: bytes | dict) -> web.Response:
    if not isinstance(body, bytes):
        body = orjson.dumps(body, option=orjson.OPT_INDENT_2)
    return web.Response(body=body, content_type="application/json")
