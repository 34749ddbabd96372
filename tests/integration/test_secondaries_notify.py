"""NOTIFY (RFC 1996) to a secondary played by dnspython on a real UDP socket: bursts coalesce to one per
zone per second, the latest serial wins, unanswered NOTIFYs are resent until a matching answer comes."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import pytest

from server.transfer import KeyRing, TransferObserver, TransferService, TransferSettings
from server.transfer.notify import NotifySender
from server.zone import names
from tests.fakestore import FORWARD, REVERSE, FakeStore, a_record, pod_zones
from tests.xfrclient import KEY_1, KEY_2

APEX = names.to_wire(FORWARD)


class FakeSecondary:
    """Receives NOTIFYs on 127.0.0.1 and answers them as `behave(index, message)` says: None drops it,
    else the wire to send back."""

    def __init__(self, behave=None, keyring=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.keyring = keyring
        self.behave = behave or (lambda index, message: answer(message))
        self.received: list[tuple[float, dns.message.Message]] = []
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            message = dns.message.from_wire(data, keyring=self.keyring)  # verifies the TSIG when signed
            self.received.append((time.monotonic(), message))
            reply = self.behave(len(self.received) - 1, message)
            if reply is not None:
                self.sock.sendto(reply, addr)

    def serials(self, zone: str = FORWARD) -> list[int]:
        return [m.answer[0][0].serial for _, m in self.received if m.question[0].name.to_text() == zone + "."]

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.sock.close()


def answer(message: dns.message.Message, **change) -> bytes:
    response = dns.message.make_response(message)  # signed with the request's key when it was signed
    response.flags |= dns.flags.AA
    for field, value in change.items():
        setattr(response, field, value)
    return response.to_wire()


class Recorder(TransferObserver):
    def __init__(self):
        self.sent, self.answered, self.failed = [], [], []

    def notify_sent(self, zone, target, serial):
        self.sent.append((zone, serial))

    def notify_answered(self, zone, target, rcode):
        self.answered.append((zone, rcode))

    def notify_failed(self, zone, target):
        self.failed.append(zone)


async def until(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.02)


@pytest.fixture
def secondary():
    made = []

    def make(**kw) -> FakeSecondary:
        made.append(FakeSecondary(**kw))
        return made[-1]

    yield make
    for fake in made:
        fake.close()


async def test_a_burst_of_commits_becomes_one_notify_with_the_latest_serial(secondary):
    target = secondary()
    store = FakeStore()
    pod_zones(store, 5)
    recorder = Recorder()
    service = TransferService(TransferSettings(notify=(("127.0.0.1", target.port),)), store, store.answer, recorder)
    await service.start()
    try:
        await until(lambda: len(target.serials(FORWARD)) == 1 and len(target.serials(REVERSE)) == 1)  # every zone at start
        for i in range(5):
            store.commit(APEX, added=[a_record(f"burst-{i}.{FORWARD}", f"10.3.0.{i}")])
            await asyncio.sleep(0.02)
        await until(lambda: target.serials(FORWARD)[-1:] == [1005])
        await asyncio.sleep(1.2)  # room for any NOTIFY that should not come
        assert target.serials(FORWARD) == [1000, 1005] and target.serials(REVERSE) == [1000]
        times = [t for t, m in target.received if m.question[0].name.to_text() == FORWARD + "."]
        assert times[1] - times[0] >= 0.95  # at most one per zone per second
        first = target.received[0][1]
        assert first.opcode() == dns.opcode.NOTIFY and first.flags & dns.flags.AA and first.question[0].rdtype == 6
        await until(lambda: service.notifier.pending() == 0)
        assert recorder.answered.count((FORWARD + ".", "NOERROR")) == 2
    finally:
        await service.stop()


def sender(port: int, store: FakeStore, recorder: Recorder, key=None, pauses=(0.1, 0.1, 0.1, 0.1, 0.1)) -> NotifySender:
    service = TransferService(TransferSettings(), store, store.answer)
    return NotifySender((("127.0.0.1", port),), key, service.current_soa, recorder, interval=1.0, pauses=pauses)


async def test_an_unanswered_notify_is_resent_until_answered(secondary):
    target = secondary(behave=lambda index, message: answer(message) if index >= 2 else None)
    store = FakeStore()
    pod_zones(store, 1)
    recorder = Recorder()
    notifier = sender(target.port, store, recorder)
    await notifier.start([APEX])
    try:
        await until(lambda: recorder.answered)
        assert len(target.received) == 3 and len({m.id for _, m in target.received}) == 1
        await asyncio.sleep(0.3)
        assert len(target.received) == 3 and recorder.answered == [(FORWARD + ".", "NOERROR")] and notifier.pending() == 0
    finally:
        await notifier.stop()


async def test_answers_that_do_not_match_are_ignored(secondary):
    def behave(index, message):
        if index == 0:
            return answer(message, id=(message.id + 1) % 65536)
        if index == 1:
            wrong_zone = dns.message.make_query(REVERSE, "SOA")
            wrong_zone.id = message.id
            wrong_zone.set_opcode(dns.opcode.NOTIFY)
            return dns.message.make_response(wrong_zone).to_wire()
        if index == 2:
            response = dns.message.make_response(message)
            response.set_opcode(dns.opcode.QUERY)
            return response.to_wire()
        return answer(message)

    target = secondary(behave=behave)
    store = FakeStore()
    pod_zones(store, 1)
    recorder = Recorder()
    notifier = sender(target.port, store, recorder)
    await notifier.start([APEX])
    try:
        await until(lambda: recorder.answered)
        assert len(target.received) == 4 and recorder.answered == [(FORWARD + ".", "NOERROR")]
    finally:
        await notifier.stop()


async def test_a_signed_notify_needs_a_signed_answer(secondary):
    ring = {KEY_1.key.name: KEY_1.key}

    def unsigned_first(index, message):
        return answer(message, tsig=None) if index == 0 else answer(message)

    target = secondary(behave=unsigned_first, keyring=ring)
    store = FakeStore()
    pod_zones(store, 1)
    recorder = Recorder()
    notifier = sender(target.port, store, recorder, key=KEY_1)
    await notifier.start([APEX])
    try:
        await until(lambda: recorder.answered)
        assert len(target.received) == 2 and all(m.had_tsig and m.keyname == KEY_1.key.name for _, m in target.received)
    finally:
        await notifier.stop()


async def test_a_refusal_is_an_answer_and_silence_fails_once_then_is_retried_until_answered(secondary):
    refusing = secondary(behave=lambda index, message: _refuse(message))
    silent = secondary(behave=lambda index, message: answer(message) if index >= 6 else None)  # down for a while
    store = FakeStore()
    pod_zones(store, 1)
    recorder = Recorder()
    late = sender(silent.port, store, recorder, pauses=(0.05, 0.05, 0.05))
    late.late_pause = 0.1
    notifiers = [sender(refusing.port, store, recorder), late]
    for notifier in notifiers:
        await notifier.start([APEX])
    try:
        await until(lambda: recorder.failed)
        assert recorder.failed == [FORWARD + "."] and 3 <= len(silent.received) <= 4  # the 3 quick tries (the 4th may be out)
        await until(lambda: len(recorder.answered) == 2)
        assert sorted(rcode for _, rcode in recorder.answered) == ["NOERROR", "REFUSED"] and len(refusing.received) == 1
        assert len(silent.received) == 7 and len({m.id for _, m in silent.received}) == 1  # the same NOTIFY, until answered
        assert recorder.failed == [FORWARD + "."] and late.pending() == 0  # failed counted once
    finally:
        for notifier in notifiers:
            await notifier.stop()


def _refuse(message: dns.message.Message) -> bytes:
    response = dns.message.make_response(message)
    response.set_rcode(dns.rcode.REFUSED)
    return response.to_wire()


async def test_notify_key_defaults_to_the_first_transfer_key(secondary):
    target = secondary(keyring={KEY_2.key.name: KEY_2.key})
    store = FakeStore()
    pod_zones(store, 1)
    settings = TransferSettings(transfer_keys=("other-key", "xfr-key"), notify=(("127.0.0.1", target.port),))
    service = TransferService(settings, store, store.answer, keys=KeyRing([KEY_1, KEY_2]))
    await service.start()
    try:
        await until(lambda: len(target.received) >= 2)
        assert all(m.keyname == KEY_2.key.name for _, m in target.received)
    finally:
        await service.stop()
