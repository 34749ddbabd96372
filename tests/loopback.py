"""Ports and addresses on loopback for servers the tests start: free for UDP and TCP at once.

All of 127.0.0.0/8 is local on Linux, so a test can take an address of its
own for a fixed port (53 for a resolver named in resolv.conf, 88 for a KDC).
"""

from __future__ import annotations

import random
import socket


def is_free(address: str, port: int) -> bool:
    """Whether both a UDP and a TCP socket can bind `port` on `address` now."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            udp.bind((address, port))
            tcp.bind((address, port))
    except OSError:
        return False
    return True


def free_port(*addresses: str) -> int:
    """A port free for UDP and TCP on every one of `addresses` (default 127.0.0.1)."""
    addresses = addresses or ("127.0.0.1",)
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((addresses[0], 0))
            port = tcp.getsockname()[1]
        if all(is_free(address, port) for address in addresses):
            return port
    raise RuntimeError(f"no port free on {', '.join(addresses)}")


def random_address(prefix: str = "127.53") -> str:
    """A loopback address under `prefix` (a /16), at random so two test runs at once rarely take the same one."""
    return f"{prefix}.{random.randrange(256)}.{random.randrange(1, 255)}"


def free_address(port: int, prefix: str = "127.53") -> str | None:
    """A random loopback address under `prefix` where `port` is free, or None when `port` cannot be bound
    (below 1024 without the privilege)."""
    for _ in range(20):
        address = random_address(prefix)
        if is_free(address, port):
            return address
    return None
