"""--log-queries: a handler that also logs each query's name, type, rcode, size, transport and peer."""

from __future__ import annotations

import logging

import dnslib

from ..serve.transport import Handler, is_stream, on_first
from ..zone import names

query_log = logging.getLogger("pod_identity_dns.queries")


def logging_handler(handler: Handler) -> Handler:
    """`handler` that also logs each query: name, type, rcode, transport, peer (--log-queries)."""

    def logged(query: bytes, tcp: bool, peer):
        reply = handler(query, tcp, peer)
        if is_stream(reply):  # one line when its first message is ready
            return on_first(reply, lambda first: log_query(query, tcp, peer, first, " (first of a stream)"))  # type: ignore[arg-type]
        log_query(query, tcp, peer, reply, "")  # type: ignore[arg-type]
        return reply

    def log_query(query: bytes, tcp: bool, peer, reply: bytes | None, note: str) -> None:
        qname, qtype = _question(query)
        if reply is None:
            outcome = "no reply"
        else:
            rcode = reply[3] & 0xF
            outcome = f"{dnslib.RCODE.get(rcode, rcode)} {len(reply)} bytes{note}"
        address = f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"
        query_log.info("%s %s from %s over %s: %s", qname, qtype, address, "tcp" if tcp else "udp", outcome)

    return logged


def _question(query: bytes) -> tuple[str, str]:
    """The first question's name and type as text, for the query log ("?" when unreadable)."""
    end = names.labels_end(query, 12) if len(query) > 12 else -1
    if end < 0 or end + 2 > len(query):
        return "?", "?"
    qtype = int.from_bytes(query[end : end + 2], "big")
    return names.to_text(query[12:end]), dnslib.QTYPE.get(qtype, f"TYPE{qtype}")
