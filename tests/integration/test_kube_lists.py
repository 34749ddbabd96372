"""How the pods are listed: streaming lists where the API server has them, paged lists where it does not.

PodWatcher with the real kubernetes.aio client against tests/fakekube.py,
which answers the way API servers with and without streaming lists (KEP-3157)
do. Lists are applied in steps with the event loop let in between.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from server.model import PodRecord
from tests.fakekube import FakeKube
from tests.kubewatch import Harness, RecordingSink, pod, watching


def count_loop_turns(h: Harness, sink: RecordingSink) -> list[int]:
    """Record, at each update() and each step of replace_all_steps, how often another task has run so far."""
    replace_steps, update = sink.replace_all_steps, sink.update
    turns = [0]
    marks: list[int] = []

    async def other_task() -> None:
        while True:
            turns[0] += 1
            await asyncio.sleep(0)

    def recorded_steps(pods: Iterable[PodRecord], version: str | None = None) -> Iterator[None]:
        for _ in replace_steps(pods, version):
            marks.append(turns[0])
            yield
        marks.append(turns[0])

    def recorded_update(upserts: Iterable[PodRecord], deletes: Iterable[str], version: str | None = None) -> None:
        marks.append(turns[0])
        update(upserts, deletes, version)

    sink.replace_all_steps = recorded_steps  # type: ignore[method-assign]
    sink.update = recorded_update  # type: ignore[method-assign]
    h.helpers.append(asyncio.create_task(other_task()))
    return marks


def strictly_increasing(marks: list[int]) -> bool:
    return all(later > earlier for earlier, later in itertools.pairwise(marks))


async def test_a_first_streaming_list_is_applied_as_it_comes_in_steps_and_synced_only_at_its_bookmark(tmp_path: Path) -> None:
    async with FakeKube() as kube:
        kube.add_pods(pod(f"web-{i}", n=i % 250) for i in range(600))
        listed_at = kube.version
        kube.initial_events_gate = asyncio.Event()  # the bookmark that ends the list waits
        async with watching(kube, tmp_path, namespaces=("default",)) as h:
            sink = h.sinks["kubernetes/default"]
            marks = count_loop_turns(h, sink)
            await h.until(lambda: len(sink.pods) == 600, "every ADDED event applied")
            # Nothing is served before the list is complete: the pods are in, the sink is not synced.
            assert not sink.synced and not h.watcher.synced and set(sink.versions) == {None}
            assert all(up <= 256 and down == 0 for up, down in sink.batches)  # steps, the loop let in between
            assert len(sink.batches) >= 3 and strictly_increasing(marks)

            kube.add_pod(pod("late", n=251))  # after the snapshot: a watch event after the bookmark
            kube.initial_events_gate.set()
            await h.synced()
            await h.until(lambda: "late" in sink.names(), "ADDED late, on the same stream")
            assert sink.versions[-2] == str(listed_at)  # the bookmark's version, with the list's end: the zones' serial
            assert ("replace_all", 600) not in sink.calls
            assert h.observer.events["ADDED"] == 1  # the list's own events are not counted as changes

            (request,) = kube.pod_requests()  # one request listed and watches on
            assert request.is_streaming_list and request.path == "/api/v1/namespaces/default/pods"
            assert request.query["resourceVersionMatch"] == "NotOlderThan"
            assert request.query["allowWatchBookmarks"] == "true"
            assert "resourceVersion" not in request.query  # a first list is a consistent read


@pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "paged"])
async def test_a_relist_replaces_the_old_state_in_steps_with_the_loop_let_in(tmp_path: Path, streaming: bool) -> None:
    async with FakeKube() as kube:
        kube.add_pods(pod(f"web-{i}", n=i % 250) for i in range(550))
        async with watching(kube, tmp_path, streaming_lists=streaming, page_size=100) as h:
            await h.synced()
            await h.until(lambda: kube.open_watches == 1, "the watch")
            marks = count_loop_turns(h, h.sink)
            kube.send_error(410, "Expired", "too old resource version")
            await h.until(lambda: h.sink.steps == [6], "the relist applied")
            assert h.sink.calls[-1] == ("replace_all", 550) and len(marks) == 6 and strictly_increasing(marks)


@pytest.mark.parametrize("refusal", ["feature-gate", "old-server", "ignored"])
async def test_an_api_server_without_streaming_lists_gets_paged_lists_and_is_not_asked_again(
    tmp_path: Path, refusal: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pod_identity_dns.kube")
    async with FakeKube(watch_list=False, watch_list_refusal=refusal) as kube:  # type: ignore[arg-type]
        kube.add_pods(pod(f"web-{i}", n=i) for i in range(5))
        async with watching(kube, tmp_path, page_size=2) as h:
            if refusal == "ignored":  # a plain watch of the state; a bookmark that ends nothing gives it away
                await h.until(lambda: kube.initial_events_sent == 5 and kube.open_watches == 1, "the state as ADDED events")
                kube.send_bookmark()
            await h.synced()
            assert h.sink.names() == [f"web-{i}" for i in range(5)]
            assert h.observer.errors == ["watch_list_unsupported"]
            refused = [r for r in caplog.records if "does not serve streaming lists" in r.getMessage()]
            assert len(refused) == 1 and refused[0].getMessage().startswith("all namespaces: the API server")
            await h.until(lambda: len(kube.resumed_watch_requests()) == 1, "the watch after the paged list")
            seen = str(kube.version)

            kube.send_error(410, "Expired", "too old resource version")  # a relist
            await h.until(lambda: len(kube.paged_list_requests()) == 2, "the relist")
            kube.add_pod(pod("after", n=9))
            await h.until(lambda: "after" in h.sink.names(), "ADDED after, once watching again")
            assert len(kube.streaming_list_requests()) == 1  # remembered: no second attempt
            first_pages = kube.paged_list_requests()
            assert "resourceVersion" not in first_pages[0].query  # the first list: a consistent read
            # The relist: NotOlderThan the version last seen (a watch cache can serve it); its other pages continue it.
            assert first_pages[1].query["resourceVersion"] == seen
            assert first_pages[1].query["resourceVersionMatch"] == "NotOlderThan"
            continued = [r for r in kube.pod_requests(watch=False) if r.query.get("continue")]
            assert continued and all("resourceVersion" not in r.query and "resourceVersionMatch" not in r.query for r in continued)


async def test_a_streaming_list_cut_before_its_bookmark_is_not_synced_and_the_next_one_reconciles(tmp_path: Path) -> None:
    async with FakeKube() as kube:
        kube.add_pods(pod(f"web-{i}", n=i) for i in range(10))
        kube.initial_events_gate = asyncio.Event()
        async with watching(kube, tmp_path) as h:
            await h.until(lambda: len(h.sink.pods) == 10 and kube.open_watches == 1, "the initial events applied")
            kube.delete_pod("default", "web-0")
            kube.drop_watches()  # the stream ends before the bookmark: no complete list
            await h.until(lambda: "list_incomplete" in h.observer.errors, "the incomplete list noticed")
            assert not h.sink.synced and not h.watcher.synced
            kube.initial_events_gate.set()
            await h.synced()
            # The next list replaced what the first had applied: web-0, deleted in between, is gone.
            assert h.sink.names() == [f"web-{i}" for i in range(1, 10)]
            assert ("replace_all", 9) in h.sink.calls
            assert len(kube.streaming_list_requests()) == 2 and not kube.paged_list_requests()


@pytest.mark.parametrize("streaming", [True, False], ids=["streaming", "paged"])
async def test_a_relist_serves_the_old_state_until_the_new_one_is_complete(tmp_path: Path, streaming: bool) -> None:
    async with FakeKube() as kube:
        kube.add_pods(pod(f"web-{i}", n=i % 250) for i in range(300))
        async with watching(kube, tmp_path, streaming_lists=streaming, page_size=50) as h:
            await h.synced()
            await h.until(lambda: kube.open_watches == 1, "the watch")
            held = asyncio.Event()
            if streaming:
                kube.initial_events_gate = held
            else:
                kube.list_gate = held
            kube.drop_watches()  # a gap the watch does not see, then its history is gone: 410, a relist
            kube.delete_pod("default", "web-0")
            kube.compact()
            await h.until(lambda: len(kube.list_requests()) == 2, "the relist under way")
            await asyncio.sleep(0.3)
            assert len(h.sink.names()) == 300 and not any(call[0] == "replace_all" for call in h.sink.calls)  # the old state, whole
            held.set()
            await h.until(lambda: len(h.sink.names()) == 299, "the relist applied")
            assert "web-0" not in h.sink.names()
