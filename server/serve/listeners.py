"""Bind every listening socket before anything is served or announced.

A port that is taken or forbidden is then one line naming the address and the
protocol (exit code 2), found before the sources load and before any log line
says the server answers. Sockets are bound here and start listening only when
the server starts serving on them.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import resource
import socket
from dataclasses import dataclass, field

log = logging.getLogger("pod_identity_dns")

UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
PORT_ZERO_TRIES = 20  # port 0 (tests): TCP picks a port, UDP must get the same one
FD_MARGIN = 64  # descriptors beyond the connection limits: listeners, files, API connections, pipes


class BindError(Exception):
    """A listening socket that could not be bound; the message names address and protocol."""


@dataclass
class DnsSockets:
    host: str
    port: int
    family: int
    tcp: socket.socket
    udp: socket.socket


@dataclass
class BoundSockets:
    """Every listener of one server process, bound and not yet listening."""

    dns: list[DnsSockets] = field(default_factory=list)
    http: socket.socket | None = None

    def close(self) -> None:
        for sockets in self.dns:
            sockets.tcp.close()
            sockets.udp.close()
        if self.http is not None:
            self.http.close()


def shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def bind_all(listen: tuple[tuple[str, int], ...], metrics_listen: tuple[str, int] | None, reuse_port: bool) -> BoundSockets:
    """UDP and TCP on each DNS address, then the HTTP address. Raises BindError (nothing stays bound)."""
    bound = BoundSockets()
    try:
        for host, port in listen:
            bound.dns.append(_bind_dns(host, port, reuse_port))
        if metrics_listen is not None:
            host, port = metrics_listen
            bound.http = _bind(host, port, socket.SOCK_STREAM, "HTTP", reuse_port=False)
    except BindError:
        bound.close()
        raise
    return bound


def _bind_dns(host: str, port: int, reuse_port: bool) -> DnsSockets:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(PORT_ZERO_TRIES if port == 0 else 1):
        tcp = _bind(host, port, socket.SOCK_STREAM, "TCP", reuse_port)
        got = tcp.getsockname()[1]
        try:
            udp = _bind(host, got, socket.SOCK_DGRAM, "UDP", reuse_port)
        except BindError as exc:
            tcp.close()
            if port == 0 and exc.__cause__ is not None and getattr(exc.__cause__, "errno", None) == errno.EADDRINUSE:
                continue  # the UDP side of the port TCP got is taken: try another port
            raise
        return DnsSockets(host, got, family, tcp, udp)
    raise BindError(f"cannot listen on {shown(host)}: no port free for both UDP and TCP after {PORT_ZERO_TRIES} tries")


def _bind(host: str, port: int, kind: int, what: str, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if family == socket.AF_INET6:
            # IPv6-only, so [::] and 0.0.0.0 can share a port.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart while old connections linger
        else:
            # Room for bursts; the kernel caps this at net.core.rmem_max.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise BindError(f"cannot listen on {shown(host)} port {port} ({what}): {exc.strerror or exc}") from exc
    sock.setblocking(False)
    return sock


def raise_fd_limit(needed: int) -> None:
    """Raise the soft limit on open files to the hard one (as Go does at start); warn if the connection
    limits could still use more descriptors than that, since running out stops every listener."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        needed += FD_MARGIN
        if soft != resource.RLIM_INFINITY and soft < needed:
            log.warning(
                "the open file limit (%d) is below what the connection limits may use (%d): "
                "lower --tcp-max-connections or --metrics-max-connections, or raise the limit (ulimit -n)",
                soft,
                needed,
            )
