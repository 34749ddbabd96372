"""The HTTP side, on the server's own event loop: /metrics, /healthz, /readyz and /debug/identities.

Because it shares the loop with DNS, /healthz answering means the loop is alive.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("pod_identity_dns.http")

INDEX = b"""pod-identity-dns
/metrics            Prometheus metrics
/healthz            200 while the process and its event loop run
/readyz             200 when synced, listening and not shutting down; 503 otherwise
/debug/identities   served identities, static entries and conflicts (JSON)
"""


class HttpServer:
    """One aiohttp site; `exposition(accept)` gives the /metrics body and its content type."""

    def __init__(self, app: App, exposition: Callable[[str], tuple[bytes, str]]):
        self.app = app
        self.exposition = exposition
        self.runner: web.AppRunner | None = None

    def make_web_app(self) -> web.Application:
        web_app = web.Application()
        web_app.router.add_get("/", self.index)
        web_app.router.add_get("/metrics", self.metrics)
        web_app.router.add_get("/healthz", self.healthz)
        web_app.router.add_get("/readyz", self.readyz)
        web_app.router.add_get("/debug/identities", self.identities)
        return web_app

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen; returns the address really bound (port 0 becomes a free port)."""
        # No access log: probes every few seconds would drown the useful lines.
        self.runner = web.AppRunner(self.make_web_app(), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await self.runner.cleanup()
            raise
        bound = self.runner.addresses[0]
        return bound[0], bound[1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    # -- handlers --------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(body=INDEX, content_type="text/plain")

    async def metrics(self, request: web.Request) -> web.Response:
        body, content_type = self.exposition(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        app = self.app
        if app.ready:
            return web.Response(text="ready\n")
        reasons = []
        if app.stopping:
            reasons.append("shutting down")
        if not app.store.synced:
            reasons.append("pod sources not synced yet")
        if not app.listening:
            reasons.append("DNS listeners not up")
        return web.Response(status=503, text="not ready: " + ", ".join(reasons or ["unknown"]) + "\n")

    async def identities(self, request: web.Request) -> web.Response:
        body = orjson.dumps(self.app.registry.describe(), option=orjson.OPT_INDENT_2)
        return web.Response(body=body, content_type="application/json")
