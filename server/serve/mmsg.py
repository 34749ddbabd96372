"""recvmmsg(2) and sendmmsg(2) through ctypes: the C structures, declared, and the two libc functions.

The structures are declared field by field with ctypes types of the C ones
(pointers, size_t, socklen_t, int), so ctypes lays them out as the C compiler
does on each ABI (x86_64, aarch64, 32-bit ones too): no offset is written by
hand. tests/unit/test_mmsg.py holds them to what gcc says on the machine.
Linux only; `load()` says why not elsewhere.
"""

from __future__ import annotations

import ctypes
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Plain ints: socket's are IntFlag members, whose `&` costs a microsecond in Python.
MSG_DONTWAIT = int(getattr(socket, "MSG_DONTWAIT", 0x40))
MSG_TRUNC = int(getattr(socket, "MSG_TRUNC", 0x20))

socklen_t = ctypes.c_uint32  # unsigned int on every Linux ABI
sa_family_t = ctypes.c_ushort
in_port_t = ctypes.c_uint16  # network byte order: read as bytes, never as this integer


class Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class Msghdr(ctypes.Structure):
    # glibc's layout, which is the kernel's: msg_iovlen and msg_controllen are size_t.
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", socklen_t),
        ("msg_iov", ctypes.POINTER(Iovec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class Mmsghdr(ctypes.Structure):
    _fields_ = [("msg_hdr", Msghdr), ("msg_len", ctypes.c_uint)]


class InAddr(ctypes.Structure):
    _fields_ = [("s_addr", ctypes.c_uint8 * 4)]


class In6Addr(ctypes.Structure):
    _fields_ = [("s6_addr", ctypes.c_uint8 * 16)]


class SockaddrIn(ctypes.Structure):
    _fields_ = [
        ("sin_family", sa_family_t),
        ("sin_port", ctypes.c_uint8 * 2),
        ("sin_addr", InAddr),
        ("sin_zero", ctypes.c_uint8 * 8),
    ]


class SockaddrIn6(ctypes.Structure):
    _fields_ = [
        ("sin6_family", sa_family_t),
        ("sin6_port", ctypes.c_uint8 * 2),
        ("sin6_flowinfo", ctypes.c_uint32),
        ("sin6_addr", In6Addr),
        ("sin6_scope_id", ctypes.c_uint32),
    ]


class SockaddrAny(ctypes.Union):
    """Room for the peer of an AF_INET or AF_INET6 socket, one per batch slot."""

    _fields_ = [("sa_family", sa_family_t), ("v4", SockaddrIn), ("v6", SockaddrIn6)]


def field_offset(structure: Any, *path: str) -> int:
    """Byte offset of a (nested) field, from ctypes' own layout: field_offset(Mmsghdr, "msg_hdr", "msg_namelen")."""
    offset = 0
    for name in path:
        descriptor = getattr(structure, name)
        offset += descriptor.offset
        structure = dict(structure._fields_)[name]
    return offset


@dataclass(frozen=True)
class Calls:
    """recvmmsg(fd, msgvec, vlen, flags, timeout) and sendmmsg(fd, msgvec, vlen, flags); errno after a -1."""

    recvmmsg: Callable[..., int]
    sendmmsg: Callable[..., int]
    errno: Callable[[], int]


class Unavailable(Exception):
    """Batched UDP cannot run here; the message says why (for the log line of the fallback)."""


def load() -> Calls:
    """The two calls from the C library, or Unavailable."""
    if not sys.platform.startswith("linux"):
        raise Unavailable(f"recvmmsg/sendmmsg are used on Linux only (this is {sys.platform})")
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        recvmmsg, sendmmsg = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError) as exc:
        raise Unavailable(f"the C library has no recvmmsg/sendmmsg ({exc})") from None
    recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    recvmmsg.restype = ctypes.c_int
    sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    sendmmsg.restype = ctypes.c_int
    return Calls(recvmmsg, sendmmsg, ctypes.get_errno)
