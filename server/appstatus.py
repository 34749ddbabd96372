"""The running server as ops sees it: the one object App hands /metrics and the probes (ServerStatus)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .app import App


class AppStatus:
    """What ops reads of the running App (server.ops.status.ServerStatus), and nothing else."""

    def __init__(self, app: App):
        self._app = app

    @property
    def ready(self) -> bool:
        return self._app.ready

    def not_ready_reasons(self) -> list[str]:
        app, reasons = self._app, []
        if app.stopping:
            reasons.append("shutting down")
        if not app.store.synced:
            reasons.append("pod sources not synced yet")
        if not app.listening:
            reasons.append("DNS listeners not up")
        if app.transfer is not None and app.transfer.warming_up:
            reasons.append("zone transfers warming up (their messages are being encoded)")
        return reasons

    def record_counts(self) -> Mapping[str, int]:
        return self._app.registry.stats()

    def zone_serials(self) -> Mapping[str, int]:
        return {zone.name: zone.serial for zone in self._app.store.zones.values()}

    def tcp_connections(self) -> int:
        return len(self._app.tcp.open)

    def tcp_closes(self) -> Mapping[str, int]:
        return dict(self._app.tcp.closed)

    async def debug_identities(self, params: Mapping[str, str]) -> bytes | dict:
        from .registry.describe import describe_json

        return await describe_json(self._app.registry, params)
