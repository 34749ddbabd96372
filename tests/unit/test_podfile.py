"""Pod list files: the fast JSON path and the general path read the same pods."""

from __future__ import annotations

import asyncio
import os

import orjson
import pytest
import yaml

from server.app import App
from server.cli import make_parser
from server.config import build_config
from server.errors import SourceError
from server.sources.podfile import parse_pod_file, start_pod_file
from server.zone.names import to_wire
from tests import helpers


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
    app = App(config, None, started._replace(batches=iter(decoded)))
    asyncio.run(app.load_sources())
    name = to_wire(f"kafka-0.kafka.default.{helpers.ZONE}")
    assert app.store.rrset(name, 1) == [bytes([10, 244, 0, 1])]

    async def polls() -> None:
        for _ in range(2):  # seen changed, then held still for one poll: applied
            await app.files[0].reload_if_changed()

    asyncio.run(polls())
    assert app.store.rrset(name, 1) == [bytes([10, 244, 0, 2])]
