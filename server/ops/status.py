"""What the ops side (metrics, probes, /debug/identities) may read of the running server, and nothing more.

server/app.py implements it; server/ops imports nothing of app, registry,
sources or the zone store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class ServerStatus(Protocol):
    @property
    def ready(self) -> bool:
        """Every pod source synced, the listeners up, no shutdown begun (/readyz, poddns_ready)."""
        ...

    def not_ready_reasons(self) -> list[str]:
        """Why not ready, in words ("shutting down", ...); empty when ready."""
        ...

    def record_counts(self) -> Mapping[str, int]:
        """forward_names, ptrs, static_entries and conflicts, as served now."""
        ...

    def zone_serials(self) -> Mapping[str, int]:
        """The SOA serial of each zone, by zone name (with the final dot)."""
        ...

    def tcp_connections(self) -> int:
        """Open DNS TCP connections."""
        ...

    def tcp_closes(self) -> Mapping[str, int]:
        """DNS TCP connections closed so far, by reason (server.serve.tcppool.CLOSE_REASONS)."""
        ...

    async def debug_identities(self, params: Mapping[str, str]) -> bytes | dict:
        """The /debug/identities body (JSON bytes, or a dict to encode), given the request's query parameters."""
        ...
