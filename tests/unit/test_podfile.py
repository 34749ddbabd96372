"""Pod list files: the fast JSON path and the general path read the same pods, and tell the same problems."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys

import orjson
import pytest
import yaml

from server.app import App
from server.cli import make_parser
from server.config import build_config
from server.errors import SourceError
from server.sources.podfile import BATCH_PODS, parse_pod_file, pod_file_batches, start_pod_file
from server.zone.names import to_wire
from tests import helpers
from tests.conftest import REPO as ROOT


class _Taken(list):
    """Batches taken already, as a PodFileLoad hands them on."""

    def __init__(self, batches, stats):
        super().__init__(batches)
        self.stats = stats


def _pod_list(items: list) -> dict:
    return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items}


def test_json_list_with_an_oddly_typed_item_reads_like_yaml(tmp_path):
    odd = helpers.sts_pod("kafka", 1, "10.0.0.2")
    odd["spec"]["hostNetwork"] = "no"  # a string where the schema wants a bool
    odd["status"]["conditions"] = "not a list"
    items = [helpers.sts_pod("kafka", 0, "10.0.0.1"), odd, helpers.sts_pod("kafka", 2, ["10.0.0.3", "fd00::3"])]
    as_json = tmp_path / "pods.json"
    as_json.write_bytes(orjson.dumps(_pod_list(items)))
    as_yaml = tmp_path / "pods.yaml"
    as_yaml.write_text(yaml.safe_dump(_pod_list(items)))

    records = parse_pod_file(str(as_json))

    assert records == parse_pod_file(str(as_yaml))
    assert [(r.hostname, r.ips, r.host_network) for r in records] == [
        ("kafka-0", ("10.0.0.1",), False),
        ("kafka-1", ("10.0.0.2",), False),
        ("kafka-2", ("10.0.0.3", "fd00::3"), False),
    ]


def test_an_unusable_item_names_its_index(tmp_path):
    nameless = helpers.sts_pod("kafka", 1, "10.0.0.2")
    del nameless["metadata"]["name"]
    path = tmp_path / "pods.json"
    path.write_bytes(orjson.dumps(_pod_list([helpers.sts_pod("kafka", 0, "10.0.0.1"), nameless])))
    with pytest.raises(SourceError, match=r"item 1: no metadata\.name"):
        parse_pod_file(str(path))


def test_an_item_that_is_not_an_object_names_its_index(tmp_path):
    path = tmp_path / "pods.json"
    path.write_bytes(orjson.dumps(_pod_list([helpers.sts_pod("kafka", 0, "10.0.0.1"), "kafka-1"])))
    with pytest.raises(SourceError, match="item 1: not an object"):
        parse_pod_file(str(path))


@pytest.mark.parametrize("content", [b"", b"  \n\t\n"])
def test_an_empty_file_is_an_error_not_an_empty_cluster(tmp_path, content):
    path = tmp_path / "pods.json"
    path.write_bytes(content)
    with pytest.raises(SourceError, match="the file is empty"):
        parse_pod_file(str(path))


def test_a_missing_file_names_the_reason(tmp_path):
    with pytest.raises(SourceError, match="No such file"):
        parse_pod_file(str(tmp_path / "absent.json"))


def test_a_file_replaced_while_the_first_load_starts_is_read_again(tmp_path):
    # serve starts decoding before it builds the server; a swap in between must not be missed.
    path = tmp_path / "pods.json"

    def write(ip: str) -> None:
        (tmp_path / "next.json").write_bytes(orjson.dumps(_pod_list([helpers.sts_pod("kafka", 0, ip)])))
        os.replace(tmp_path / "next.json", path)  # atomically, as a ConfigMap update does

    write("10.244.0.1")
    args = ["serve", "--zone", helpers.ZONE, "--reverse-cidr", "10.244.0.0/16", "--pods-file", str(path)]
    config = build_config(make_parser().parse_args(args))
    started = start_pod_file(str(path))
    decoded = list(started.batches)  # taken now, so the old file is surely the one decoded
    write("10.244.0.2")
    app = App(config, None, started._replace(batches=_Taken(decoded, started.batches.stats)))
    asyncio.run(app.load_sources())
    name = to_wire(f"kafka-0.kafka.default.{helpers.ZONE}")
    assert app.store.rrset(name, 1) == [bytes([10, 244, 0, 1])]

    async def polls() -> None:
        for _ in range(2):  # seen changed, then held still for one poll: applied
            await app.files[0].reload_if_changed()

    asyncio.run(polls())
    assert app.store.rrset(name, 1) == [bytes([10, 244, 0, 2])]


# -- what a pod file holds that cannot be used: told, counted, and the rest still served --


def _write_both(tmp_path, items: list) -> list[str]:
    """The same pods as `kubectl -o json` and as `-o yaml`."""
    as_json = tmp_path / "pods.json"
    as_json.write_bytes(orjson.dumps(_pod_list(items)))
    as_yaml = tmp_path / "pods.yaml"
    as_yaml.write_text(yaml.safe_dump(_pod_list(items)))
    return [str(as_json), str(as_yaml)]


def test_a_copied_block_keeps_the_first_pod_and_names_both(tmp_path):
    original = helpers.sts_pod("kafka", 0, "10.244.0.1", uid="u-1")
    copy = helpers.sts_pod("kafka", 1, "10.244.0.2", uid="u-1")  # copied, renamed, uid left as it was
    items = [original, helpers.sts_pod("kafka", 2, "10.244.0.3"), copy]
    for path in _write_both(tmp_path, items):
        content = parse_pod_file(path)
        assert [pod.name for pod in content] == ["kafka-0", "kafka-2"]
        assert content.stats.summary() == f"loaded 2 pods from {path}: 2 identities, 0 skipped, 1 duplicates"
        assert content.stats.by_reason == {"duplicate_uid": 1}
        assert content.stats.warnings == [
            f"{path}: item 2 (pod default/kafka-1): the same metadata.uid 'u-1' as item 0 (pod default/kafka-0): skipped, item 0 kept"
        ]


def test_duplicates_are_found_across_batches_of_the_first_load(tmp_path):
    # The first load applies batches as they come: a repeat in a later batch must not replace the first.
    items = [helpers.sts_pod("web", n, f"10.244.{n >> 8}.{n & 255}") for n in range(BATCH_PODS + 10)]
    items.append(helpers.sts_pod("web", 0, "10.244.200.1", uid=items[3]["metadata"]["uid"]))
    path = tmp_path / "pods.json"
    path.write_bytes(orjson.dumps(_pod_list(items)))
    load = pod_file_batches(str(path))
    records = [pod for batch in load for pod in batch]
    assert len(records) == BATCH_PODS + 10
    assert len({pod.uid for pod in records}) == len(records)
    assert load.stats.duplicates == 1
    assert f"item {BATCH_PODS + 10} (pod default/web-0): the same metadata.uid" in load.stats.warnings[0]
    assert "as item 3 (pod default/web-3)" in load.stats.warnings[0]


def test_a_pod_with_an_ip_that_is_not_one_is_told_and_kept_without_it(tmp_path):
    broken = helpers.sts_pod("kafka", 1, "10.244.5.300")
    dual = helpers.sts_pod("kafka", 2, ["10.244.5.3", "fd00::5:3"])
    dual["status"]["podIPs"].insert(1, {"ip": "fd00::zz"})
    for path in _write_both(tmp_path, [helpers.sts_pod("kafka", 0, "10.244.5.1"), broken, dual]):
        content = parse_pod_file(path)
        assert [pod.ips for pod in content] == [("10.244.5.1",), (), ("10.244.5.3", "fd00::5:3")]
        assert content.stats.summary() == f"loaded 3 pods from {path}: 2 identities, 2 skipped, 0 duplicates"
        assert content.stats.warnings == [
            f"{path}: item 1 (pod default/kafka-1): status.podIPs: '10.244.5.300': not an IP address, skipped; the pod has no IP left",
            f"{path}: item 2 (pod default/kafka-2): status.podIPs: 'fd00::zz': not an IP address, skipped; kept 10.244.5.3, fd00::5:3",
        ]


@pytest.mark.parametrize(
    "field,value",
    [
        ("hostname", "*"),
        ("hostname", " sp "),
        ("hostname", "a\x00b"),
        ("subdomain", "a/b"),
        ("subdomain", "kafka.x"),
        ("hostname", "h" * 64),
    ],
)
def test_a_name_that_is_not_a_name_loses_the_identity_not_the_pod(tmp_path, field, value):
    bad = helpers.sts_pod("kafka", 1, "10.244.0.2")
    bad["spec"][field] = value
    for path in _write_both(tmp_path, [helpers.sts_pod("kafka", 0, "10.244.0.1"), bad]):
        content = parse_pod_file(path)
        kept = content[1]
        assert (kept.name, kept.hostname, kept.subdomain, kept.ips) == ("kafka-1", "", "", ("10.244.0.2",))
        assert content.stats.summary() == f"loaded 2 pods from {path}: 1 identities, 1 skipped, 0 duplicates"
        (warning,) = content.stats.warnings
        assert warning.startswith(f"{path}: item 1 (pod default/kafka-1): spec.{field} {value[:48]!r}")
        assert "is not a DNS label" in warning and "no identity name" in warning


def test_items_of_another_kind_are_counted_as_skipped(tmp_path):
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kafka"}}
    repeat = helpers.sts_pod("kafka", 1, "10.244.0.2", uid="uid-default-kafka-0")  # found after the Service
    for path in _write_both(tmp_path, [helpers.sts_pod("kafka", 0, "10.244.0.1"), service, repeat]):
        content = parse_pod_file(path)
        assert content.stats.summary() == f"loaded 1 pods from {path}: 1 identities, 1 skipped, 1 duplicates"
        assert content.stats.warnings[0] == f"{path}: item 1: kind 'Service' (named 'kafka'), not a Pod: skipped"
        assert "as item 0 (pod default/kafka-0)" in content.stats.warnings[1]


def test_a_flood_of_one_problem_lists_twenty_then_counts(tmp_path):
    items = [helpers.sts_pod("web", n, "10.244.0.300") for n in range(25)]
    path = tmp_path / "pods.json"
    path.write_bytes(orjson.dumps(_pod_list(items)))
    stats = parse_pod_file(str(path)).stats
    assert len(stats.warnings) == 21
    assert stats.warnings[-1] == f"{path}: 5 more items with invalid ip (not listed one by one)"
    assert stats.skipped_items == stats.by_reason["invalid_ip"] == 25


def test_fifty_thousand_pod_ips_keep_one_of_each_family(tmp_path):
    many = helpers.sts_pod("big", 0, [f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}" for n in range(50_000)] + ["fd00::1", "fd00::2"])
    path = tmp_path / "pods.json"
    path.write_bytes(orjson.dumps(_pod_list([many])))
    content = parse_pod_file(str(path))
    assert content[0].ips == ("10.0.0.0", "fd00::1")
    assert content.stats.warnings == [
        f"{path}: item 0 (pod default/big-0): status.podIPs has 50002 addresses, "
        "Kubernetes allows one IPv4 and one IPv6: kept 10.0.0.0 and fd00::1, skipped 50000"
    ]


def test_yaml_too_large_for_the_memory_limit_says_to_use_json(tmp_path):
    items = [helpers.sts_pod("web", n, f"10.244.{n >> 8}.{n & 255}", labels={f"l{i}": "v" * 40 for i in range(20)}) for n in range(1500)]
    path = tmp_path / "pods.yaml"
    path.write_text(yaml.safe_dump(_pod_list(items)))  # ~2.5 MB: far more than 16 MiB once decoded
    as_json = tmp_path / "pods.json"
    as_json.write_bytes(orjson.dumps(_pod_list(items)))
    # In a fresh interpreter: a child forked from this test process (hundreds of MiB, much of it free
    # heap by now) could decode into the free space it inherits, which the limit does not count.
    script = (
        "import sys\n"
        "from server.errors import SourceError\n"
        "from server.sources.podfile import parse_pod_file\n"
        "try:\n"
        "    parse_pod_file(sys.argv[1], memory_limit=16 << 20)\n"
        "except SourceError as exc:\n"
        "    print(exc)\n"
        "print(len(parse_pod_file(sys.argv[2], memory_limit=16 << 20)))\n"
    )
    run = subprocess.run([sys.executable, "-c", script, str(path), str(as_json)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    refused, decoded = run.stdout.splitlines()
    assert re.search(r"too large for YAML.*--pods-file-memory-limit \(16 MiB\).*kubectl get pods -A -o json", refused), refused
    assert decoded == "1500"  # the same pods, as JSON, fit


def test_a_yaml_bomb_is_refused_without_expanding(tmp_path):
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 9)]  # 10^9 leaves, if expanded
    path = tmp_path / "pods.yaml"
    path.write_text("\n".join(levels) + "\nkind: List\nitems: *a8\n")
    with pytest.raises(SourceError, match="item 0: not an object"):
        parse_pod_file(str(path), memory_limit=16 << 20)


def test_each_load_logs_its_line_and_a_problem_is_warned_once_across_reloads(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="pod_identity_dns.files")
    path = tmp_path / "pods.json"
    bad = helpers.sts_pod("kafka", 1, "10.244.0.2")
    bad["spec"]["hostname"] = "*"
    path.write_bytes(orjson.dumps(_pod_list([helpers.sts_pod("kafka", 0, "10.244.0.1"), bad])))
    config = build_config(make_parser().parse_args(["serve", "--zone", helpers.ZONE, "--pods-file", str(path)]))
    told = []

    class Observer:
        def attach(self, status):
            pass

        def file_reload(self, kind, result):
            told.append((kind, result))

        def file_items(self, kind, stats):
            told.append((kind, stats.by_reason))

    app = App(config, Observer())
    asyncio.run(app.load_sources())
    name = to_wire(f"kafka-0.kafka.default.{helpers.ZONE}")
    assert app.store.rrset(name, 1) == [bytes([10, 244, 0, 1])]
    assert not app.store.rrset(to_wire(f"*.kafka.default.{helpers.ZONE}"), 1)

    path.write_bytes(orjson.dumps(_pod_list([helpers.sts_pod("kafka", 0, "10.244.0.9"), bad])))

    async def polls() -> None:
        for _ in range(2):
            await app.files[0].reload_if_changed()

    asyncio.run(polls())
    assert app.store.rrset(name, 1) == [bytes([10, 244, 0, 9])]
    lines = [r.getMessage() for r in caplog.records if r.name == "pod_identity_dns.files"]
    summary = f"loaded 2 pods from {path}: 1 identities, 1 skipped, 0 duplicates"
    assert len(lines) == 3 and lines[1:] == [summary, summary]  # the warning once, the line at each load
    assert lines[0].startswith(f"{path}: item 1 (pod default/kafka-1): spec.hostname '*' is not a DNS label")
    assert told == [("pods", "success"), ("pods", {"invalid_name": 1})] * 2
