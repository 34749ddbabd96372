"""PodWatcher with the real kubernetes.aio client against the fake API server: how the watch works."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pytest

from server.model import PodRecord
from server.sources.kube import KubeSettings, load_client_config
from tests.fakekube import FakeKube, Request, event_line, parse_selector
from tests.kubewatch import pod, watching


async def test_initial_paged_list_then_synced(tmp_path: Path) -> None:
    async with FakeKube() as kube:
        kube.add_pods(pod(f"web-{i}", n=i) for i in range(7))
        async with watching(kube, tmp_path, page_size=3, watch_timeout_seconds=123, streaming_lists=False) as h:
            await h.synced()
            assert h.sink.names() == [f"web-{i}" for i in range(7)]
            assert h.sink.synced
            # A first list goes to the sink page by page (nothing is served before it is synced), then its version.
            assert h.sink.batches == [(3, 0), (3, 0), (1, 0), (0, 0)]
            assert h.sink.versions == [None, None, None, str(kube.version)]
            assert h.sink.calls[-1] == ("set_synced", True)
            assert h.observer.synced_values == [True]
            assert list(h.sinks) == ["kubernetes"]

            lists = kube.pod_requests(watch=False)
            assert [r.query.get("limit") for r in lists] == ["3", "3", "3"]
            assert [bool(r.query.get("continue")) for r in lists] == [False, True, True]
            assert "resourceVersion" not in lists[0].query  # a first list is a consistent read
            await h.until(lambda: kube.open_watches == 1, "the watch")
            watch = kube.pod_requests(watch=True)[0]
            assert watch.query["resourceVersion"] == str(kube.version)
            assert watch.query["allowWatchBookmarks"] == "true"
            assert watch.query["timeoutSeconds"] == "123"


async def test_add_modify_delete_reach_the_sink(tmp_path: Path) -> None:
    async with FakeKube() as kube:
        kube.add_pod(pod("a", n=1))
        kube.add_pod(pod("b", n=2))
        async with watching(kube, tmp_path) as h:
            await h.synced()
            await h.until(lambda: kube.open_watches == 1, "the watch")

            kube.add_pod(pod("c", n=3))
            await h.until(lambda: "c" in h.sink.names(), "ADDED c")

            def move(p: dict) -> None:
                p["status"]["podIP"] = "10.244.9.9"
                p["status"]["podIPs"] = [{"ip": "10.244.9.9"}]

            kube.modify_pod("default", "a", move)
            await h.until(lambda: h.sink.ips("a") == ("10.244.9.9",), "MODIFIED a")

            kube.delete_pod("default", "b")
            await h.until(lambda: h.sink.names() == ["a", "c"], "DELETED b")
            # Each change carries the resourceVersion it brings the source to: the zones' serial.
            listed, *changes = [v for v in h.sink.versions if v is not None]  # the list's pages carry none
            assert [int(v) for v in changes] == sorted(int(v) for v in changes)
            assert changes[-1] == str(kube.version) and int(changes[0]) > int(listed)

            assert h.observer.events == Counter(ADDED=1, MODIFIED=1, DELETED=1)
            assert h.observer.applied_names == ["c", "a", "b"]
            assert len(kube.list_requests()) == 1


async def test_a_burst_of_events_is_applied_in_few_batches_with_the_last_state_of_each_pod(tmp_path: Path) -> None:
    async with FakeKube() as kube:
        kube.add_pod(pod("keep", n=1))
        async with watching(kube, tmp_path) as h:
            await h.synced()
            await h.until(lambda: kube.open_watches == 1, "the watch")
            # All in one step of the fake's loop: the events arrive together.
            kube.add_pods(pod(f"web-{i}", n=i + 10, padding=2000) for i in range(600))
            kube.add_pod(pod("brief", n=2))
            kube.delete_pod("default", "brief")
            kube.modify_pod("default", "keep", lambda p: p["metadata"]["labels"].update(step="1"))
            kube.modify_pod("default", "keep", lambda p: p["metadata"]["labels"].update(step="2"))
            await h.until(lambda: len(h.observer.applied_names) == 604, "every event")

            assert h.sink.names() == sorted(["keep", *(f"web-{i}" for i in range(600))])
            assert sum(up + down for up, down in h.sink.batches) < 604  # the pods changed twice count once
            assert len(h.sink.batches) < 20
            assert all(up + down <= 256 for up, down in h.sink.batches)
            assert h.sink.versions[-1] == str(kube.version)  # the last event's version: where the watch resumes
            kube.drop_watches()
            await h.watching_again(1)
            assert kube.pod_requests(watch=True)[-1].query["resourceVersion"] == str(kube.version)
            assert len(kube.list_requests()) == 1


async def test_an_event_longer_than_the_read_buffer_is_put_together(tmp_path: Path) -> None:
    async with FakeKube() as kube, watching(kube, tmp_path) as h:
        await h.synced()
        await h.until(lambda: kube.open_watches == 1, "the watch")
        kube.add_pod(pod("huge", n=1, padding=5 * 2**20))  # the client reads 2 MiB at a time
        kube.add_pod(pod("after", n=2))
        await h.until(lambda: h.sink.names() == ["after", "huge"], "both pods")
        assert h.sink.ips("huge") == ("10.244.0.1",)
        assert h.observer.errors == []


async def test_a_failure_while_applying_events_is_logged_and_a_list_reconciles(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pod_identity_dns.kube")
    async with FakeKube() as kube:
        kube.add_pod(pod("a", n=1))
        async with watching(kube, tmp_path) as h:
            await h.synced()
            await h.until(lambda: kube.open_watches == 1, "the watch")
            sink, working_update = h.sink, h.sink.update

            def broken_once(upserts: Iterable[PodRecord], deletes: Iterable[str], version: str | None = None) -> None:
                sink.update = working_update  # type: ignore[method-assign]
                raise RuntimeError("bug in the sink")

            sink.update = broken_once  # type: ignore[method-assign]
            kube.add_pod(pod("b", n=2))
            await h.until(lambda: sink.names() == ["a", "b"], "b, from the list after the failure")
            assert len(kube.list_requests()) == 2
            assert h.observer.errors == ["internal"]
            logged = [r for r in caplog.records if "unexpected error; listing again" in r.getMessage()]
            assert len(logged) == 1 and logged[0].levelname == "ERROR" and logged[0].exc_info


async def test_bookmark_moves_the_version_so_a_resume_needs_no_relist(tmp_path: Path) -> None:
    async with FakeKube() as kube:
        kube.add_pod(pod("a", "one"))
        async with watching(kube, tmp_path, namespaces=("one",)) as h:
            await h.synced()
            await h.until(lambda: kube.open_watches == 1, "the watch")
            # Changes this watch does not see move the global version on...
            kube.add_pods(pod(f"other-{i}", "two", n=i) for i in range(3))
            kube.send_bookmark()
            bookmark_version = kube.version
            await h.until(lambda: h.observer.events["BOOKMARK"] == 1, "the bookmark")
            # ...so without the bookmark, resuming after compaction would hit 410.
            kube.compact()
            kube.drop_watches()
            await h.watching_again(1)

            assert kube.pod_requests(watch=True)[1].query["resourceVersion"] == str(bookmark_version)
            kube.add_pod(pod("b", "one", n=2))
            await h.until(lambda: h.sinks["kubernetes/one"].names() == ["a", "b"], "ADDED b")
            assert len(kube.list_requests()) == 1
            assert h.observer.relists == 0
            assert h.observer.restarts == 1


@pytest.mark.parametrize("abort", [False, True], ids=["clean-close", "connection-cut"])
async def test_stream_drop_resumes_from_last_version_without_relist(tmp_path: Path, abort: bool) -> None:
    async with FakeKube() as kube:
        kube.add_pod(pod("a", n=1))
        async with watching(kube, tmp_path) as h:
            await h.synced()
            await h.until(lambda: kube.open_watches == 1, "the watch")
            kube.add_pod(pod("b", n=2))
            await h.until(lambda: "b" in h.sink.names(), "ADDED b")
            seen_version = kube.version

            kube.drop_watches(abort=abort)
            kube.add_pod(pod("c", n=3))  # while no watch is open: must come from the resumed watch
            await h.watching_again(1)
            await h.until(lambda: h.sink.names() == ["a", "b", "c"], "ADDED c after the resume")

            assert kube.pod_requests(watch=True)[1].query["resourceVersion"] == str(seen_version)
            assert len(kube.list_requests()) == 1
            assert h.observer.relists == 0


@pytest.mark.parametrize("gone_as", ["status", "event"])
async def test_410_on_resume_relists_and_reconciles(tmp_path: Path, gone_as: str) -> None:
    async with FakeKube(gone_as=gone_as) as kube:
        kube.add_pod(pod("a", n=1))
        kube.add_pod(pod("b", n=2))
        async with watching(kube, tmp_path) as h:
            await h.synced()
            await h.until(lambda: kube.open_watches == 1, "the watch")
            seen = str(kube.version)  # the list's: nothing changed since
            # A gap the watch never sees, then history older than the gap is gone.
            kube.drop_watches()
            kube.delete_pod("default", "b")
            kube.add_pod(pod("c", n=3))
            kube.compact()

            await h.until(lambda: h.sink.names() == ["a", "c"], "the relist")
            assert len(kube.list_requests()) == 2
            assert h.observer.relists == 1
            # The first list was applied as it came; the relist replaced the old state whole.
            assert [call for call in h.sink.calls if call[0] == "replace_all"] == [("replace_all", 2)]
            assert h.sink.calls.count(("set_synced", True)) == 1
            if gone_as == "event":
                assert h.observer.events["ERROR"] == 1
            # The relist asks for a state not older than the last one seen: the API server's watch cache serves that.
            relist = kube.list_requests()[-1]
            assert relist.is_streaming_list
            assert relist.query["resourceVersion"] == seen and relist.query["resourceVersionMatch"] == "NotOlderThan"
            assert h.sink.versions[-1] == str(kube.version)

            await h.until(lambda: kube.open_watches == 1, "the new watch")
            kube.add_pod(pod("d", n=4))  # the streaming relist watches on
            await h.until(lambda: h.sink.names() == ["a", "c", "d"], "ADDED d")
            assert len(kube.list_requests()) == 2


async def test_410_error_event_in_an_open_stream_relists(tmp_path: Path) -> None:
    async with FakeKube() as kube:
        kube.add_pod(pod("a", n=1))
        async with watching(kube, tmp_path) as h:
            await h.synced()
            await h.until(lambda: kube.open_watches == 1, "the watch")
            kube.send_error(410, "Expired", "too old resource version: 1 (2)")
            await h.until(lambda: len(kube.list_requests()) == 2, "the relist")
            assert h.observer.events["ERROR"] == 1
            assert h.observer.relists == 1
            assert h.sink.names() == ["a"]


async def test_expired_continue_token_restarts_the_list(tmp_path: Path) -> None:
    async with FakeKube() as kube:
        kube.add_pods(pod(f"web-{i}", n=i) for i in range(5))
        expired = []

        def expire_once(request: Request) -> None:
            if request.query.get("continue") and not expired:
                expired.append(request)
                kube.expire_continue_tokens()
                kube.delete_pod("default", "web-0")  # the fresh list must not show it

        kube.before_request = expire_once
        async with watching(kube, tmp_path, page_size=2, streaming_lists=False) as h:
            await h.synced()
            # The first attempt's page was applied; the next list replaced it whole, so web-0 went.
            assert h.sink.names() == [f"web-{i}" for i in range(1, 5)]
            assert [call for call in h.sink.calls if call[0] == "replace_all"] == [("replace_all", 4)]
            lists = kube.pod_requests(watch=False)
            assert [bool(r.query.get("continue")) for r in lists] == [False, True, False, True]
            assert len(expired) == 1


@pytest.mark.parametrize("outage", ["refused", "http-500"])
async def test_api_down_at_start_is_retried_until_it_syncs(tmp_path: Path, outage: str) -> None:
    async with FakeKube() as kube:
        kube.add_pod(pod("a", n=1))
        if outage == "refused":
            await kube.go_down()
        else:
            kube.fail_requests(500)
        async with watching(kube, tmp_path) as h:
            await h.until(lambda: len(h.observer.errors) >= 3, "failed attempts")
            assert not h.watcher.synced and not h.sink.synced
            assert set(h.observer.errors) == {"connection" if outage == "refused" else "http_500"}

            if outage == "refused":
                await kube.come_up()
            else:
                kube.fail_requests(None)
            await h.synced()
            assert h.sink.names() == ["a"]


@pytest.mark.parametrize("outage", ["refused", "http-500", "http-503", "http-429", "http-403"])
async def test_api_down_mid_run_keeps_state_and_recovers(tmp_path: Path, outage: str) -> None:
    async with FakeKube() as kube:
        kube.add_pod(pod("a", n=1))
        async with watching(kube, tmp_path) as h:
            await h.synced()
            await h.bookmarked()  # the watch worked: its end is not the failure counted below
            if outage == "refused":
                await kube.go_down()
            else:
                kube.fail_requests(int(outage.removeprefix("http-")))
            await h.until(lambda: len(h.observer.errors) >= 3, "failed attempts")
            assert set(h.observer.errors) == {"connection" if outage == "refused" else outage.replace("-", "_")}
            assert h.sink.names() == ["a"] and h.sink.synced and h.watcher.synced

            kube.add_pod(pod("b", n=2))  # happens while the client cannot see it
            if outage == "refused":
                await kube.come_up()
            else:
                kube.fail_requests(None)
            await h.until(lambda: h.sink.names() == ["a", "b"], "ADDED b after recovery")
            assert len(kube.list_requests()) == 1  # resumed from the last version


async def test_namespace_filter_one_source_per_namespace(tmp_path: Path) -> None:
    async with FakeKube() as kube:
        for ns in ("one", "two", "three"):
            kube.add_pod(pod(f"{ns}-a", ns))
        async with watching(kube, tmp_path, namespaces=("one", "two")) as h:
            await h.synced()
            assert sorted(h.sinks) == ["kubernetes/one", "kubernetes/two"]
            assert h.sinks["kubernetes/one"].names() == ["one-a"]
            assert h.sinks["kubernetes/two"].names() == ["two-a"]
            await h.until(lambda: kube.open_watches == 2, "two watches")

            kube.add_pod(pod("three-b", "three"))
            kube.add_pod(pod("two-b", "two"))
            await h.until(lambda: h.sinks["kubernetes/two"].names() == ["two-a", "two-b"], "ADDED two-b")
            assert h.sinks["kubernetes/one"].names() == ["one-a"]
            assert {r.path for r in kube.pod_requests()} == {
                "/api/v1/namespaces/one/pods",
                "/api/v1/namespaces/two/pods",
            }


async def test_label_selector(tmp_path: Path) -> None:
    async with FakeKube() as kube:
        kube.add_pod(pod("web", labels={"app": "web", "tier": "front"}))
        kube.add_pod(pod("cache", labels={"app": "web", "tier": "cache"}))
        kube.add_pod(pod("db", labels={"app": "db"}))
        async with watching(kube, tmp_path, label_selector="app=web,tier!=cache") as h:
            await h.synced()
            assert h.sink.names() == ["web"]
            await h.until(lambda: kube.open_watches == 1, "the watch")
            assert all(r.query["labelSelector"] == "app=web,tier!=cache" for r in kube.pod_requests())

            kube.modify_pod("default", "cache", lambda p: p["metadata"]["labels"].update(tier="front"))
            await h.until(lambda: h.sink.names() == ["cache", "web"], "cache now selected")
            kube.modify_pod("default", "web", lambda p: p["metadata"]["labels"].update(app="other"))
            await h.until(lambda: h.sink.names() == ["cache"], "web no longer selected")


async def test_malformed_event_lines_are_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pod_identity_dns.kube")
    async with FakeKube() as kube, watching(kube, tmp_path) as h:
        await h.synced()
        await h.until(lambda: kube.open_watches == 1, "the watch")
        kube.inject_line(b"{this is not json")
        kube.inject_line(b'{"type": "ADDED"}')
        kube.inject_line(b'["not", "an", "event"]')
        kube.add_pod(pod("a", n=1))
        await h.until(lambda: h.sink.names() == ["a"], "ADDED a after the bad lines")

        assert h.observer.errors == ["malformed_event"] * 3
        assert len(kube.pod_requests(watch=True)) == 1 and kube.open_watches == 1
        assert len([r for r in caplog.records if "malformed" in r.getMessage()]) == 3


async def test_events_split_across_reads_are_put_back_together(tmp_path: Path) -> None:
    lines = b"".join(event_line("ADDED", pod(name, n=n)) for n, name in enumerate(["a", "b", "c"], 1))
    cuts = [7, lines.index(b"\n") + 1, lines.index(b'"b"') + 2, len(lines) - 3, len(lines)]
    async with FakeKube() as kube, watching(kube, tmp_path) as h:
        await h.synced()
        await h.until(lambda: kube.open_watches == 1, "the watch")
        start = 0
        for cut in cuts:  # separate writes, apart in time: separate reads
            kube.inject_bytes(lines[start:cut])
            start = cut
            await asyncio.sleep(0.05)
        await h.until(lambda: h.sink.names() == ["a", "b", "c"], "the three events")
        assert sorted((p.name, p.ips) for p in h.sink.pods.values()) == [
            ("a", ("10.244.0.1",)),
            ("b", ("10.244.0.2",)),
            ("c", ("10.244.0.3",)),
        ]
        assert h.observer.errors == [] and len(kube.list_requests()) == 1


async def test_a_line_past_the_limit_ends_the_watch_and_relists(tmp_path: Path) -> None:
    async with FakeKube() as kube, watching(kube, tmp_path, max_event_bytes=4096) as h:
        await h.synced()
        await h.until(lambda: kube.open_watches == 1, "the watch")
        for _ in range(3):
            kube.inject_bytes(b"x" * 2000)  # no newline: one line that never ends
            await asyncio.sleep(0.05)
        await h.until(lambda: len(kube.list_requests()) == 2, "a relist")
        kube.add_pod(pod("a", n=1))
        await h.until(lambda: h.sink.names() == ["a"], "ADDED a on the new watch")


async def test_server_timeout_ends_the_watch_and_it_is_resumed(tmp_path: Path) -> None:
    async with FakeKube() as kube, watching(kube, tmp_path, watch_timeout_seconds=1) as h:
        await h.synced()
        await h.until(lambda: len(kube.pod_requests(watch=True)) >= 3, "two watch restarts")
        assert h.observer.restarts >= 2
        assert all(r.query["timeoutSeconds"] == "1" for r in kube.pod_requests(watch=True))
        kube.add_pod(pod("a", n=1))
        await h.until(lambda: h.sink.names() == ["a"], "ADDED a")
        assert len(kube.list_requests()) == 1
        assert h.observer.errors == []


async def test_client_read_timeout_ends_a_silent_stream(tmp_path: Path) -> None:
    async with FakeKube() as kube:
        kube.honour_timeout = False  # a dead connection: the server never closes it
        async with watching(kube, tmp_path, watch_timeout_seconds=1, read_timeout_seconds=1.5) as h:
            await h.synced()
            await h.until(lambda: "timeout" in h.observer.errors, "the client timeout", timeout=5)
            await h.watching_again(1)
            kube.add_pod(pod("a", n=1))
            await h.until(lambda: h.sink.names() == ["a"], "ADDED a")
            assert len(kube.list_requests()) == 1


async def test_bearer_token_from_kubeconfig(tmp_path: Path) -> None:
    async with FakeKube(token="s3cret") as kube:
        kube.add_pod(pod("a", n=1))
        async with watching(kube, tmp_path) as h:
            await h.synced()
            assert h.sink.names() == ["a"]


async def test_load_client_config_uses_kubeconfig_and_context(tmp_path: Path) -> None:
    async with FakeKube() as kube:
        path = kube.write_kubeconfig(tmp_path / "kubeconfig")
        config = await load_client_config(KubeSettings(kubeconfig=str(path), context="fake"))
        assert config.host == kube.url


async def test_load_client_config_falls_back_to_KUBECONFIG(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeKube() as kube:
        path = kube.write_kubeconfig(tmp_path / "kubeconfig")
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.setenv("KUBECONFIG", str(path))
        config = await load_client_config(KubeSettings())
        assert config.host == kube.url


@pytest.mark.parametrize(
    "selector, labels, selected",
    [
        ("", {}, True),
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "db"}, False),
        ("app!=web", {}, True),
        ("app=web,tier!=cache", {"app": "web", "tier": "cache"}, False),
        ("app", {"app": ""}, True),
        ("!app", {"app": "x"}, False),
        ("tier in (front, back)", {"tier": "back"}, True),
        ("tier notin (front,back),app", {"tier": "x", "app": "y"}, True),
    ],
)
def test_fake_label_selector(selector: str, labels: dict[str, str], selected: bool) -> None:
    assert all(test(labels) for test in parse_selector(selector)) is selected


def test_fake_rejects_a_bad_selector() -> None:
    with pytest.raises(ValueError):
        parse_selector("app>1")
