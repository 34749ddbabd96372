"""The batched UDP front end: up to N queries per recvmmsg, their replies in one sendmmsg.

Same handler as the uvloop path (metrics and query log included), called
once per datagram. Every buffer is allocated once: a slot per query (its
bytes, the peer's sockaddr, an iovec and an mmsghdr to read into) and a
slot per reply (bytes, iovec, mmsghdr pointing at the peer's sockaddr, so
a reply goes back to the address the kernel wrote without a Python address
object in between). The event loop calls `readable` when the socket has
datagrams; it reads batches until the socket is drained, at most
`rounds` of them, so TCP, HTTP and the watch get their turn in between.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import socket
import sys
from collections.abc import Callable

from . import mmsg
from .transport import UDP_QUERY_MAX, Handler

log = logging.getLogger("pod_identity_dns.transport")

DATAGRAMS_PER_WAKEUP = 256  # a wakeup reads at most this many (at least one batch): ~2 ms of answering
REPLY_SLOT = 4096  # replies over UDP are at most 1232 bytes (the handler cuts them); larger go by sendto
PEER_CACHE = 4096  # peer address tuples kept, by their sockaddr bytes: resolvers reuse few addresses


class BatchedUdp:
    """One UDP listener served with recvmmsg/sendmmsg from loop.add_reader; close() as a transport's."""

    def __init__(self, sock: socket.socket, handler: Handler, batch: int = 64, calls: mmsg.Calls | None = None):
        if not 1 <= batch <= 1024:
            raise ValueError(f"batch must be 1-1024, not {batch}")
        self.sock, self.handler, self.batch = sock, handler, batch
        self.fd = sock.fileno()
        self.rounds = max(1, DATAGRAMS_PER_WAKEUP // batch)
        self.calls = calls or mmsg.load()
        self.peer_of = _peer_decoder(sock.family)
        self.unsent = 0  # replies dropped because sendmmsg refused them (logged at debug)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._slots = _Slots(batch, sock.family, UDP_QUERY_MAX, REPLY_SLOT)

    # -- the event loop's side ------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.fd, self.readable)

    def close(self) -> None:
        """Answer what is in the socket buffer now (one bounded wakeup's worth), then stop reading and close."""
        if self._closed:
            return
        self.readable()
        self._closed = True
        if self._loop is not None:
            self._loop.remove_reader(self.fd)
        self.sock.close()

    def is_closing(self) -> bool:
        return self._closed

    def readable(self) -> None:
        """Read, answer and send batches until a short read (the socket is drained) or `rounds` of them."""
        batch = self.batch
        for _ in range(self.rounds):
            count = self.receive()
            if count < 0:
                return
            if count:
                self.send(self.answer(count))
            if count < batch:
                return

    # -- one batch -----------------------------------------------------------

    def receive(self) -> int:
        """recvmmsg into the query slots: how many datagrams (0 after EINTR), or -1 when there are none."""
        count = self.calls.recvmmsg(self.fd, self._slots.recv_vec, self.batch, mmsg.MSG_DONTWAIT, None)
        if count >= 0:
            return count
        code = self.calls.errno()
        if code == errno.EINTR:
            return 0
        if code not in (errno.EAGAIN, errno.EWOULDBLOCK):
            log.debug("UDP socket error: %s", os.strerror(code))  # e.g. a queued ICMP error; as error_received does
        return -1

    def answer(self, count: int) -> int:
        """Call the handler for the first `count` query slots; fill the reply slots; how many replies."""
        s = self._slots
        handler, peers, queries, replies, send_len = self.handler, s.peers, s.queries, s.replies, s.send_len
        qslot, rslot, reply_starts, reply_lengths = s.query_slot, s.reply_slot, s.reply_starts, s.reply_length_at
        if s.pointers_moved:  # the last batch had a query without a reply; its replies are sent by now
            s.restore_peer_pointers()
        out = 0
        for i, start, size, key in zip(range(count), s.query_starts, s.lengths[:count].tolist(), s.peer_keys(count)):
            query = queries[start : start + size].tobytes()
            if size == qslot and s.truncated(i):
                log.debug("UDP query longer than %d bytes: the handler sees the first %d", qslot, qslot)
            peer = peers.get(key) or self._remember(key, i)
            try:
                reply = handler(query, False, peer)
                if reply is None:
                    continue
                size = len(reply)  # type: ignore[arg-type]  # a stream here is a bug: logged below
                if size > rslot:
                    self._send_one(reply, peer)  # type: ignore[arg-type]
                    continue
                base = reply_starts[out]
                replies[base : base + size] = reply  # type: ignore[assignment]
            except Exception:  # a bug for one packet must not stop the others
                log.exception("internal error answering a UDP query from %s", peer)
                continue
            send_len[reply_lengths[out]] = size
            if out != i:  # reply slot j points at query slot j's peer unless an earlier query got no reply
                s.point_reply_at(out, i)
            out += 1
        s.restore_name_lengths()
        return out

    def send(self, count: int) -> None:
        """sendmmsg the first `count` reply slots; one the kernel refuses is dropped (debug log), the rest still go."""
        s = self._slots
        sent = 0
        while sent < count:
            done = self.calls.sendmmsg(self.fd, s.send_vec + sent * s.msg_size, count - sent, 0)
            if done > 0:
                sent += done
                continue
            code = self.calls.errno()
            if done < 0 and code == errno.EINTR:
                continue
            self.unsent += 1
            log.debug("UDP reply to %s not sent: %s", self._reply_peer(sent), os.strerror(code) if done < 0 else "nothing sent")
            sent += 1

    # -- helpers -----------------------------------------------------------------

    def _remember(self, key: object, slot: int) -> tuple:
        peers = self._slots.peers
        if len(peers) >= PEER_CACHE:
            peers.clear()
        peer = peers[key] = self.peer_of(self._slots.name_bytes(slot))
        return peer

    def _reply_peer(self, reply_slot: int) -> tuple:
        s = self._slots
        pointer = s.send_ptr[reply_slot * s.stride_ptr + s.name_ptr_at]
        return self.peer_of(s.name_bytes(s.name_addrs.index(pointer)))

    def _send_one(self, reply: bytes, peer: tuple) -> None:
        try:
            self.sock.sendto(reply, peer)
        except OSError as exc:
            self.unsent += 1
            log.debug("UDP reply to %s not sent: %s", peer, exc)


class _Slots:
    """Every buffer of one listener, allocated once, with memoryviews to read and write them per datagram.

    Word indexes into the arrays come from ctypes' field offsets and sizes
    divided by the word's size, so they follow the ABI's layout. Reply slot j
    points at query slot j's peer address unless the batch had a query
    without a reply; every msg_namelen is the address slot's size (the
    kernel writes the peer's length into those of the reads: they are reset
    after each batch).
    """

    def __init__(self, batch: int, family: int, query_slot: int, reply_slot: int):
        self.query_slot, self.reply_slot = query_slot, reply_slot
        name_size = ctypes.sizeof(mmsg.SockaddrAny)
        self.name_size = name_size
        self.name_stride = -(-name_size // 8) * 8  # slots start on 8 bytes: an IPv4 peer is one 64-bit word
        self.msg_size = ctypes.sizeof(mmsg.Mmsghdr)
        iov_size = ctypes.sizeof(mmsg.Iovec)
        self._query_buf = bytearray(batch * query_slot)
        self._reply_buf = bytearray(batch * reply_slot)
        self._name_buf = bytearray(batch * self.name_stride)
        self._recv_iov_buf, self._send_iov_buf = bytearray(batch * iov_size), bytearray(batch * iov_size)
        self._recv_msg_buf, self._send_msg_buf = bytearray(batch * self.msg_size), bytearray(batch * self.msg_size)

        query_arr = (ctypes.c_char * len(self._query_buf)).from_buffer(self._query_buf)
        reply_arr = (ctypes.c_char * len(self._reply_buf)).from_buffer(self._reply_buf)
        names_arr = (ctypes.c_char * len(self._name_buf)).from_buffer(self._name_buf)
        recv_iov = (mmsg.Iovec * batch).from_buffer(self._recv_iov_buf)
        send_iov = (mmsg.Iovec * batch).from_buffer(self._send_iov_buf)
        recv_msgs = (mmsg.Mmsghdr * batch).from_buffer(self._recv_msg_buf)
        send_msgs = (mmsg.Mmsghdr * batch).from_buffer(self._send_msg_buf)
        query_base, reply_base = ctypes.addressof(query_arr), ctypes.addressof(reply_arr)
        self.name_addrs = [ctypes.addressof(names_arr) + i * self.name_stride for i in range(batch)]
        for i in range(batch):
            recv_iov[i].iov_base, recv_iov[i].iov_len = query_base + i * query_slot, query_slot
            send_iov[i].iov_base = reply_base + i * reply_slot
            for msgs, iov in ((recv_msgs, recv_iov), (send_msgs, send_iov)):
                hdr = msgs[i].msg_hdr
                hdr.msg_name, hdr.msg_namelen = self.name_addrs[i], name_size
                hdr.msg_iov, hdr.msg_iovlen = ctypes.pointer(iov[i]), 1
        self.recv_vec, self.send_vec = ctypes.addressof(recv_msgs), ctypes.addressof(send_msgs)
        self._keep = (query_arr, reply_arr, names_arr, recv_iov, send_iov, recv_msgs, send_msgs)

        self.queries, self.replies, self.names = memoryview(self._query_buf), memoryview(self._reply_buf), memoryview(self._name_buf)
        recv32 = memoryview(self._recv_msg_buf).cast("I")
        self.send_ptr = memoryview(self._send_msg_buf).cast("P")
        self.send_len = _words(self._send_iov_buf, "N")  # size_t
        stride32 = _index(self.msg_size, 4)
        self.stride_ptr = _index(self.msg_size, self.send_ptr.itemsize)
        self.iov_stride = _index(iov_size, self.send_len.itemsize)
        self.iov_len_at = _index(mmsg.field_offset(mmsg.Iovec, "iov_len"), self.send_len.itemsize)
        self.name_ptr_at = _index(mmsg.field_offset(mmsg.Mmsghdr, "msg_hdr", "msg_name"), self.send_ptr.itemsize)
        self.lengths = recv32[_index(mmsg.field_offset(mmsg.Mmsghdr, "msg_len"), 4) :: stride32]
        self.flags = recv32[_index(mmsg.field_offset(mmsg.Mmsghdr, "msg_hdr", "msg_flags"), 4) :: stride32]
        self._name_lengths = recv32[_index(mmsg.field_offset(mmsg.Mmsghdr, "msg_hdr", "msg_namelen"), 4) :: stride32]
        self._name_lengths_full = memoryview(bytearray(self._name_lengths.tobytes())).cast("I")
        name_ptrs = self.send_ptr[self.name_ptr_at :: self.stride_ptr]
        self._name_ptrs, self._name_ptrs_first = name_ptrs, memoryview(bytearray(name_ptrs.tobytes())).cast("P")
        if family == socket.AF_INET:  # family, port and address: the first 8 bytes of a sockaddr_in
            words = memoryview(self._name_buf).cast("Q")[:: self.name_stride // 8]
            self.peer_keys: Callable[[int], list] = lambda count: words[:count].tolist()
        else:
            names, stride, size = self.names, self.name_stride, name_size
            self.peer_keys = lambda count: [names[i : i + size].tobytes() for i in range(0, count * stride, stride)]
        self.peers: dict[object, tuple] = {}
        self.pointers_moved = False
        # Per-slot positions, computed once: the loop indexes lists instead of multiplying.
        self.query_starts = [i * query_slot for i in range(batch)]
        self.reply_starts = [i * reply_slot for i in range(batch)]
        self.reply_length_at = [i * self.iov_stride + self.iov_len_at for i in range(batch)]

    def point_reply_at(self, reply_slot: int, query_slot: int) -> None:
        self.send_ptr[reply_slot * self.stride_ptr + self.name_ptr_at] = self.name_addrs[query_slot]
        self.pointers_moved = True

    def truncated(self, slot: int) -> bool:
        return bool(self.flags[slot] & mmsg.MSG_TRUNC)

    def name_bytes(self, slot: int) -> bytes:
        return self.names[slot * self.name_stride : slot * self.name_stride + self.name_size].tobytes()

    def restore_name_lengths(self) -> None:
        self._name_lengths[:] = self._name_lengths_full

    def restore_peer_pointers(self) -> None:
        self._name_ptrs[:] = self._name_ptrs_first
        self.pointers_moved = False


def _words(buffer: bytearray, format: str) -> memoryview:
    return memoryview(buffer).cast(format)  # type: ignore[call-overload]  # typeshed lists no "N" (size_t)


def _index(offset: int, size: int) -> int:
    if offset % size:
        raise mmsg.Unavailable(f"unexpected structure layout: offset {offset} is not a multiple of {size}")
    return offset // size


def _peer_decoder(family: int) -> Callable[[bytes], tuple]:
    """sockaddr bytes -> the address tuple the socket module (and uvloop) gives: (host, port[, flowinfo, scope_id])."""
    if family == socket.AF_INET:
        port_at = mmsg.field_offset(mmsg.SockaddrIn, "sin_port")
        addr_at = mmsg.field_offset(mmsg.SockaddrIn, "sin_addr")

        def v4(raw: bytes) -> tuple:
            return socket.inet_ntop(socket.AF_INET, raw[addr_at : addr_at + 4]), int.from_bytes(raw[port_at : port_at + 2], "big")

        return v4
    if family == socket.AF_INET6:
        port_at = mmsg.field_offset(mmsg.SockaddrIn6, "sin6_port")
        flow_at = mmsg.field_offset(mmsg.SockaddrIn6, "sin6_flowinfo")
        addr6_at = mmsg.field_offset(mmsg.SockaddrIn6, "sin6_addr")
        scope_at = mmsg.field_offset(mmsg.SockaddrIn6, "sin6_scope_id")

        def v6(raw: bytes) -> tuple:
            return (
                socket.inet_ntop(socket.AF_INET6, raw[addr6_at : addr6_at + 16]),
                int.from_bytes(raw[port_at : port_at + 2], "big"),
                int.from_bytes(raw[flow_at : flow_at + 4], "big"),
                int.from_bytes(raw[scope_at : scope_at + 4], sys.byteorder),  # host order, as the socket module gives it
            )

        return v6
    raise mmsg.Unavailable(f"address family {family} is not IPv4 or IPv6")
