"""Start one UDP listener with the front end --udp-frontend chooses: batched, uvloop, or auto (batched where it runs)."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from typing import Protocol

from . import mmsg
from .listeners import BindError, shown
from .transport import Handler, UdpProtocol
from .udpbatch import BatchedUdp

log = logging.getLogger("pod_identity_dns")


class UdpListener(Protocol):
    """What shutdown needs of a UDP listener: uvloop's DatagramTransport and BatchedUdp both are one."""

    def close(self) -> None: ...


async def serve_udp(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, handler: Handler, frontend: str, batch: int
) -> tuple[UdpListener, str]:
    """Serve `sock` with `handler`: (the listener, "batched" or "uvloop").

    "batched" that cannot run here raises BindError (exit code 2); "auto"
    logs why and takes the uvloop datagram path.
    """
    if frontend != "uvloop":
        try:
            batched = BatchedUdp(sock, handler, batch)
            batched.start(loop)
            return batched, "batched"
        except (mmsg.Unavailable, OSError) as exc:
            host, port = sock.getsockname()[:2]
            if frontend == "batched":
                raise BindError(
                    f"cannot serve UDP on {shown(host)} port {port} with --udp-frontend batched: {exc} (use auto or uvloop)"
                ) from exc
            log.info("UDP on %s port %d: the batched front end cannot run here (%s); using uvloop's datagram path", shown(host), port, exc)
    transport, _ = await loop.create_datagram_endpoint(functools.partial(UdpProtocol, handler), sock=sock)
    return transport, "uvloop"
