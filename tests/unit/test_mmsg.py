"""The ctypes structures of recvmmsg/sendmmsg laid out as the C compiler lays out the real ones, on this machine."""

from __future__ import annotations

import ctypes
import subprocess

import pytest

from server.serve import mmsg

# (C expression, the same measured on the ctypes side)
LAYOUT = [
    ("sizeof(struct iovec)", ctypes.sizeof(mmsg.Iovec)),
    ("offsetof(struct iovec, iov_base)", mmsg.field_offset(mmsg.Iovec, "iov_base")),
    ("offsetof(struct iovec, iov_len)", mmsg.field_offset(mmsg.Iovec, "iov_len")),
    ("sizeof(struct msghdr)", ctypes.sizeof(mmsg.Msghdr)),
    *(
        (f"offsetof(struct msghdr, {name})", mmsg.field_offset(mmsg.Msghdr, name))
        for name in ("msg_name", "msg_namelen", "msg_iov", "msg_iovlen", "msg_control", "msg_controllen", "msg_flags")
    ),
    ("sizeof(((struct msghdr *)0)->msg_namelen)", ctypes.sizeof(mmsg.socklen_t)),
    ("sizeof(((struct msghdr *)0)->msg_iovlen)", mmsg.Msghdr.msg_iovlen.size),
    ("sizeof(((struct msghdr *)0)->msg_controllen)", mmsg.Msghdr.msg_controllen.size),
    ("sizeof(struct mmsghdr)", ctypes.sizeof(mmsg.Mmsghdr)),
    ("offsetof(struct mmsghdr, msg_hdr)", mmsg.field_offset(mmsg.Mmsghdr, "msg_hdr")),
    ("offsetof(struct mmsghdr, msg_len)", mmsg.field_offset(mmsg.Mmsghdr, "msg_len")),
    ("offsetof(struct mmsghdr, msg_hdr.msg_flags)", mmsg.field_offset(mmsg.Mmsghdr, "msg_hdr", "msg_flags")),
    ("sizeof(struct sockaddr_in)", ctypes.sizeof(mmsg.SockaddrIn)),
    *(
        (f"offsetof(struct sockaddr_in, {name})", mmsg.field_offset(mmsg.SockaddrIn, name))
        for name in ("sin_family", "sin_port", "sin_addr")
    ),
    ("sizeof(struct sockaddr_in6)", ctypes.sizeof(mmsg.SockaddrIn6)),
    *(
        (f"offsetof(struct sockaddr_in6, {name})", mmsg.field_offset(mmsg.SockaddrIn6, name))
        for name in ("sin6_family", "sin6_port", "sin6_flowinfo", "sin6_addr", "sin6_scope_id")
    ),
    ("sizeof(sa_family_t)", ctypes.sizeof(mmsg.sa_family_t)),
    ("sizeof(socklen_t)", ctypes.sizeof(mmsg.socklen_t)),
    ("MSG_DONTWAIT", mmsg.MSG_DONTWAIT),
    ("MSG_TRUNC", mmsg.MSG_TRUNC),
]


@pytest.fixture(scope="module")
def c_values(tmp_path_factory) -> list[int]:
    """Each expression of LAYOUT as gcc computes it for this machine's C library."""
    work = tmp_path_factory.mktemp("layout")
    prints = "\n".join(f'    printf("%lu\\n", (unsigned long)({expr}));' for expr, _ in LAYOUT)
    (work / "layout.c").write_text(
        "#define _GNU_SOURCE\n#include <stdio.h>\n#include <stddef.h>\n#include <sys/socket.h>\n#include <sys/uio.h>\n"
        f"#include <netinet/in.h>\nint main(void) {{\n{prints}\n    return 0;\n}}\n"
    )
    subprocess.run(["gcc", "-o", str(work / "layout"), str(work / "layout.c")], check=True, capture_output=True, timeout=60)
    out = subprocess.run([str(work / "layout")], check=True, capture_output=True, text=True, timeout=10).stdout
    return [int(line) for line in out.split()]


def test_every_size_and_offset_is_the_c_compilers(c_values):
    assert len(c_values) == len(LAYOUT)
    mismatches = [f"{expr}: C {c}, ctypes {py}" for (expr, py), c in zip(LAYOUT, c_values) if c != py]
    assert not mismatches, mismatches


def test_peer_slot_holds_either_family():
    assert ctypes.sizeof(mmsg.SockaddrAny) == max(ctypes.sizeof(mmsg.SockaddrIn), ctypes.sizeof(mmsg.SockaddrIn6))
    assert mmsg.field_offset(mmsg.SockaddrAny, "v6", "sin6_family") == mmsg.field_offset(mmsg.SockaddrAny, "v4", "sin_family") == 0


def test_load_finds_both_calls_in_this_c_library():
    calls = mmsg.load()
    # Nothing to read on a bad descriptor: -1 and EBADF, from the real call.
    assert calls.recvmmsg(-1, None, 1, mmsg.MSG_DONTWAIT, None) == -1
    assert calls.errno() == 9  # EBADF
    assert calls.sendmmsg(-1, None, 1, 0) == -1
