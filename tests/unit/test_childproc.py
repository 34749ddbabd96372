"""Parsing in a child process: results, errors and deaths all reach the parent."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from server.errors import SourceError
from server.sources.childproc import ChildFailed, stream_from_child


def _numbers(count: int):
    for n in range(count):
        yield [n] * 1000


def test_items_arrive_in_order_from_another_process():
    def produce():
        yield os.getpid()
        yield from _numbers(50)

    child_pid, *batches = stream_from_child(produce)
    assert child_pid != os.getpid()
    assert batches == list(_numbers(50))


def test_a_source_error_in_the_child_is_raised_in_the_parent():
    def produce():
        yield "first"
        raise SourceError("pods.json", 7, "bad pod")

    received = []
    with pytest.raises(SourceError) as caught:
        for item in stream_from_child(produce):
            received.append(item)
    assert received == ["first"]
    assert (caught.value.path, caught.value.line, caught.value.reason) == ("pods.json", 7, "bad pod")


@pytest.mark.parametrize("death", ["exit", "signal", "exception"])
def test_a_child_that_dies_is_reported_not_waited_for(death):
    def produce():
        yield "first"
        if death == "exit":
            os._exit(3)
        if death == "signal":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError("a bug in the parser")

    with pytest.raises(ChildFailed, match={"exit": "exit code 3", "signal": "signal 9", "exception": "exit code 1"}[death]):
        list(stream_from_child(produce))


def test_leaving_early_stops_the_child():
    def produce():
        yield os.getpid()
        while True:
            yield "more"

    items = stream_from_child(produce)
    child_pid = next(items)
    items.close()
    with pytest.raises(ProcessLookupError):
        os.kill(child_pid, 0)  # killed and reaped: no such process any more


def test_a_worker_thread_can_start_one():
    # Reloads parse in asyncio.to_thread: the child is forked from a thread that is not the main one.
    results = []
    worker = threading.Thread(target=lambda: results.append(list(stream_from_child(lambda: _numbers(3)))))
    worker.start()
    worker.join(30)
    assert results == [list(_numbers(3))]


def test_a_child_killed_in_the_middle_of_a_message_is_reported():
    def produce():
        yield os.getpid()
        yield ["y" * 100 + str(n) for n in range(100_000)]  # ~10 MB: blocks on the pipe part-written
        yield "never"

    items = stream_from_child(produce)
    child_pid = next(items)
    time.sleep(0.5)
    os.kill(child_pid, signal.SIGKILL)  # as the OOM killer would
    with pytest.raises(ChildFailed):
        next(items)


def test_a_fork_that_fails_is_the_streams_error_and_leaks_nothing(monkeypatch):
    def no_fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")  # a pids limit

    monkeypatch.setattr(os, "fork", no_fork)
    open_before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        with pytest.raises(ChildFailed, match="cannot start the parser process"):
            list(stream_from_child(lambda: _numbers(1)))
    assert len(os.listdir("/proc/self/fd")) == open_before


def test_what_the_producer_returns_arrives_after_its_items():
    def produce():
        yield from _numbers(3)
        return {"counted": 3}

    items = stream_from_child(produce)
    assert list(items) == list(_numbers(3))
    assert items.result == {"counted": 3}


def test_a_child_past_its_memory_limit_says_so():
    def produce():
        yield "first"
        hoard = []
        while True:
            hoard.append(bytearray(1 << 20))  # 1 MiB more each time, until the limit stops it
            if len(hoard) > 4096:
                yield "the limit did not hold"

    items = stream_from_child(produce, memory_limit=32 << 20)
    assert next(items) == "first"
    with pytest.raises(ChildFailed, match=r"ran out of memory \(its limit is 33554432 bytes beyond the server's own\)"):
        next(items)
