"""A misbehaving API server is never hammered, and the watch always recovers (issue 9, item 4).

Each test drives the real kubernetes.aio client against tests/fakekube.py
broken in one way a stress run found, and bounds what the watcher does by
counting requests over a window, with wide margins: the bugs made hundreds or
thousands where the bounds allow tens.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.fakekube import FakeKube
from tests.kubewatch import Harness, pod, watching

LOGGER = "pod_identity_dns.kube"


def logged(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if text in record.getMessage()]


async def watches_during(h: Harness, seconds: float) -> int:
    before = len(h.kube.pod_requests(watch=True))
    await asyncio.sleep(seconds)
    return len(h.kube.pod_requests(watch=True)) - before


async def test_watches_that_end_after_one_event_are_backed_off_and_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with FakeKube() as kube:
        kube.add_pod(pod("a", n=1))
        async with watching(kube, tmp_path, backoff_initial=0.1, backoff_max=1.0, healthy_watch_seconds=1.0) as h:
            await h.synced()
            await h.end_watches("bookmark-then-close")  # 200, one BOOKMARK, end: for ever
            watches = await watches_during(h, 3.0)
            assert 5 <= watches < 20  # the bug: 1,200 a second
            assert len(logged(caplog, "watches in a row ended within 1s of opening")) == 1
            assert logged(caplog, "watches in a row ended")[0].getMessage().startswith("all namespaces: 5 watches in a row")
            assert len(kube.list_requests()) == 1 and h.observer.errors == []  # each resumed from the bookmark's version

            kube.watch_quirk = None
            kube.add_pod(pod("b", n=2))
            await h.until(lambda: h.sink.names() == ["a", "b"], "ADDED b once a watch stays open")
            await asyncio.sleep(1.2)  # up long enough to count as working
            kube.drop_watches()
            await h.until(lambda: bool(logged(caplog, "a watch stayed up again")), "the recovery logged")
            assert h.watcher.synced and h.sink.calls.count(("set_synced", True)) == 1


async def test_bookmark_then_410_on_every_watch_relists_a_few_times_not_in_a_loop(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with FakeKube() as kube:
        kube.add_pods(pod(f"web-{i}", n=i % 250) for i in range(1000))
        async with watching(kube, tmp_path, relist_backoff_initial=0.5, relist_backoff_max=2.0) as h:
            await h.synced()
            await h.end_watches("bookmark-then-410")
            lists_before = len(kube.list_requests())
            await asyncio.sleep(1.0)
            kube.delete_pod("default", "web-0")  # only a list tells: every watch fails at once
            await asyncio.sleep(3.0)
            relists = len(kube.list_requests()) - lists_before
            assert 2 <= relists <= 8  # the bug: one per round trip, 74 in 30 s at 2k pods
            assert "web-0" not in h.sink.names() and len(h.sink.names()) == 999  # relists still reconcile
            assert all(count in (1000, 999) for call, count in h.sink.calls if call == "replace_all")  # never emptied
            assert logged(caplog, "relists since a watch last stayed up; listing again in")
            assert h.watcher.synced and h.sink.calls.count(("set_synced", True)) == 1

            kube.watch_quirk = None
            await h.until(lambda: kube.open_watches == 1, "a watch that stays open")
            kube.add_pod(pod("late", n=251))
            await h.until(lambda: "late" in h.sink.names(), "ADDED late")


@pytest.mark.parametrize("too_large_as", ["status", "event"])
async def test_an_api_server_restored_from_backup_is_listed_again_from_scratch(tmp_path: Path, too_large_as: str) -> None:
    async with FakeKube(too_large_as=too_large_as) as kube:  # type: ignore[arg-type]
        kube.add_pods(pod(f"kept-{i}", n=i) for i in range(1, 6))
        backup = kube.backup()
        kube.add_pods(pod(f"lost-{i}", n=10 + i) for i in range(50))
        async with watching(kube, tmp_path, retry_after_max=0.1) as h:
            await h.synced()
            assert len(h.sink.names()) == 55
            await h.bookmarked()

            kube.restore(backup)  # its versions are now lower than the one we watch from
            await h.until(lambda: h.sink.names() == [f"kept-{i}" for i in range(1, 6)], "the 50 lost pods gone")
            assert h.observer.errors == ["resource_version_too_large"] * 3
            relist = kube.list_requests()[-1]
            assert len(kube.list_requests()) == 2 and relist.query.get("resourceVersion", "") == ""  # from etcd
            assert h.watcher.synced and h.sink.versions[-1] == str(backup.version)

            await h.until(lambda: kube.open_watches == 1, "the watch from the restored version")
            kube.add_pod(pod("after", n=200))
            await h.until(lambda: "after" in h.sink.names(), "ADDED after the restore")


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_is_honoured(tmp_path: Path, status: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    async with FakeKube() as kube:
        kube.add_pod(pod("a", n=1))
        async with watching(kube, tmp_path) as h:  # a backoff of 0.05-0.2 s: a dozen tries in 2.5 s without it
            await h.synced()
            await h.until(lambda: kube.open_watches == 1, "the watch")
            kube.fail_requests(status, retry_after=1)
            before = len(kube.requests)
            await asyncio.sleep(2.5)
            assert 1 <= len(kube.requests) - before <= 4
            assert logged(caplog, "(the server asked for 1s)")

            kube.fail_requests(None)
            kube.add_pod(pod("b", n=2))
            await h.until(lambda: h.sink.names() == ["a", "b"], "ADDED b after the API recovered")
            assert len(kube.list_requests()) == 1 and h.sink.synced


async def test_a_huge_retry_after_is_bounded(tmp_path: Path) -> None:
    async with FakeKube() as kube:
        kube.add_pod(pod("a", n=1))
        async with watching(kube, tmp_path, retry_after_max=0.3) as h:
            await h.synced()
            kube.fail_requests(503, retry_after=3600)
            before = len(kube.requests)
            await asyncio.sleep(2.0)
            assert len(kube.requests) - before >= 3  # an hour's wait would allow one
            kube.fail_requests(None)
            kube.add_pod(pod("b", n=2))
            await h.until(lambda: h.sink.names() == ["a", "b"], "ADDED b after the API recovered")


async def test_a_flood_of_malformed_lines_is_counted_in_full_and_logged_in_brief(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    async with FakeKube() as kube, watching(kube, tmp_path, warning_summary_seconds=0.5) as h:
        await h.synced()
        await h.until(lambda: kube.open_watches == 1, "the watch")
        kube.inject_bytes(b"{not an event\n" * 20_000)
        await h.until(lambda: len(h.observer.errors) == 20_000, "every malformed line counted")
        await asyncio.sleep(0.6)
        kube.add_pod(pod("a", n=1))  # the next read closes the interval
        await h.until(lambda: h.sink.names() == ["a"], "ADDED a after the flood")
        assert set(h.observer.errors) == {"malformed_event"}
        assert len(logged(caplog, "skipped malformed watch event: ")) == 5
        summaries = logged(caplog, "more malformed watch events in the last")
        assert [r.getMessage().split(" in the last")[0] for r in summaries] == ["all namespaces: skipped 19995 more malformed watch events"]
        assert len(kube.pod_requests(watch=True)) == 1  # the stream itself was fine


async def test_a_stream_that_drips_without_completing_an_event_is_watched_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with FakeKube() as kube:
        kube.add_pod(pod("a", n=1))
        async with watching(kube, tmp_path, watch_stall_seconds=0.5) as h:  # read timeout: the default 300 s
            await h.synced()
            version = kube.version
            kube.drip_interval = 0.05
            await h.end_watches("drip")
            await h.until(lambda: h.observer.errors.count("watch_stalled") >= 2, "two stalls")
            assert set(h.observer.errors) == {"watch_stalled"}
            stalls = logged(caplog, "no complete watch event in 0s")
            assert stalls and all("bytes of a line under way" in r.getMessage() and r.levelname == "WARNING" for r in stalls)
            assert len(stalls) <= h.observer.errors.count("watch_stalled")  # once per occurrence at most
            assert all(w.query["resourceVersion"] == str(version) for w in kube.resumed_watch_requests())
            assert len(kube.list_requests()) == 1

            kube.watch_quirk = None
            kube.add_pod(pod("b", n=2))
            await h.until(lambda: h.sink.names() == ["a", "b"], "ADDED b on a watch that works")
