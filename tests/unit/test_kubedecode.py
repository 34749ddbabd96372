"""Decoding what the Kubernetes API sends: the typed fast path means what the tolerant one means; Status objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.sources.kubedecode import (
    ApiError,
    Gone,
    VersionTooLarge,
    decode_event,
    decode_event_tolerantly,
    decode_page,
    decode_page_tolerantly,
    decode_status,
    status_error,
)
from tests import helpers

_ODD = st.one_of(st.none(), st.booleans(), st.integers(-1, 2), st.sampled_from(["", "x"]), st.just([]), st.just({}), st.just([None]))


def _maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
    """A plausible value, or a value of some other JSON type."""
    return st.one_of(strategy, _ODD)


_STAMPS = st.sampled_from(["2026-11-01T10:00:00Z", "2026-11-01T10:00:05Z", "2026-11-01T10:00:09.5+00:00", "soon"])
_IPS = st.sampled_from(["10.244.0.1", "10.244.0.2", "fd00:10:244::1", " 10.0.0.3", "010.0.0.1", "::ffff:1.2.3.4", "no"])


def _pods(maybe: Callable[[st.SearchStrategy], st.SearchStrategy]) -> st.SearchStrategy:
    """Pod-like objects; `maybe` decides what may stand in for each field's plausible value."""

    def some(**fields: st.SearchStrategy) -> st.SearchStrategy:
        return st.fixed_dictionaries({}, optional={key: maybe(value) for key, value in fields.items()})

    return some(
        metadata=some(
            name=st.sampled_from(["web-0", "Web-1"]),
            namespace=st.sampled_from(["default", "team-a"]),
            uid=st.sampled_from(["u-1", "u-2"]),
            creationTimestamp=_STAMPS,
            deletionTimestamp=_STAMPS,
            resourceVersion=st.sampled_from(["7", "8"]),
        ),
        spec=some(
            hostname=st.sampled_from(["web-0", "Web-0"]),
            subdomain=st.sampled_from(["web", "WEB"]),
            hostNetwork=st.booleans(),
            containers=st.just([{"name": "main", "env": [{"name": "A", "value": "1"}]}]),
        ),
        status=some(
            phase=st.sampled_from(["Running", "Failed", "Pending"]),
            podIP=_IPS,
            podIPs=st.lists(maybe(some(ip=_IPS)), max_size=3),
            conditions=st.lists(
                maybe(
                    some(type=st.sampled_from(["Ready", "Other"]), status=st.sampled_from(["True", "False"]), lastTransitionTime=_STAMPS)
                ),
                max_size=3,
            ),
        ),
        code=st.sampled_from([410, 500]),
        message=st.just("too old resource version"),
        reason=st.just("Expired"),
    )


_COMPLETE_PODS = st.builds(
    helpers.pod,
    name=st.sampled_from(["web-0", "kafka-1"]),
    ips=st.lists(_IPS, max_size=2),
    hostname=st.sampled_from([None, "web-0", "Kafka-1"]),
    subdomain=st.sampled_from([None, "web", "KAFKA"]),
    namespace=st.sampled_from(["default", "team-a"]),
    created=_STAMPS,
    deleting=st.one_of(st.none(), _STAMPS),
    phase=st.sampled_from(["Running", "Succeeded", "Pending"]),
    ready=st.booleans(),
    host_network=st.booleans(),
).flatmap(lambda pod: st.sampled_from([pod, {**pod, "status": {k: v for k, v in pod["status"].items() if k != "podIPs"}}]))
# Real pods and well-typed ones (null allowed) take the msgspec path; the others fall back.
_PODS = st.one_of(_COMPLETE_PODS, _pods(lambda value: st.one_of(value, st.none())), _pods(_maybe))


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR", "OTHER"]), obj=st.one_of(_PODS, _ODD))
def test_typed_event_decoding_means_what_the_tolerant_one_means(kind: str, obj: Any) -> None:
    line = orjson.dumps({"type": kind, "object": obj})
    assert decode_event(line) == decode_event_tolerantly(line)


@settings(max_examples=200, deadline=None)
@given(items=st.lists(_PODS, max_size=4), token=_maybe(st.just("next")))
def test_typed_page_decoding_means_what_the_tolerant_one_means(items: list, token: Any) -> None:
    body = orjson.dumps({"kind": "PodList", "metadata": {"resourceVersion": "9", "continue": token}, "items": items})
    assert decode_page(body) == decode_page_tolerantly(body)


def test_lines_that_are_not_events_decode_to_none() -> None:
    for line in (b"{not json", b'{"type": "ADDED"}', b'["not", "an", "event"]', b'{"type": 1, "object": {}}', b"null"):
        assert decode_event(line) is None, line


# -- Status objects: what a failure means --

_TOO_LARGE_1_20 = {
    "kind": "Status",
    "status": "Failure",
    "message": "Timeout: Too large resource version: 900099999, current: 75601849",
    "reason": "Timeout",
    "details": {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1},
    "code": 504,
}
_TOO_LARGE_1_17 = {**_TOO_LARGE_1_20, "details": {"causes": [{"message": "Too large resource version"}], "retryAfterSeconds": 1}}
_TOO_LARGE_1_16 = {**_TOO_LARGE_1_20, "details": {}}


@pytest.mark.parametrize("status", [_TOO_LARGE_1_20, _TOO_LARGE_1_17, _TOO_LARGE_1_16], ids=["1.20", "1.17", "1.16"])
def test_too_large_resource_version_is_recognised_in_every_wording(status: dict) -> None:
    decoded = decode_status(orjson.dumps(status))
    assert decoded.too_large_version
    error = status_error(504, decoded, "http_504", decoded.retry_after)
    assert isinstance(error, VersionTooLarge) and error.category == "resource_version_too_large"
    event = decode_event(orjson.dumps({"type": "ERROR", "object": status}))
    assert event is not None and event.status == decoded


def test_a_plain_gateway_timeout_is_not_a_too_large_version() -> None:
    decoded = decode_status(orjson.dumps({"kind": "Status", "code": 504, "reason": "Timeout", "message": "request timed out"}))
    assert not decoded.too_large_version
    error = status_error(504, decoded, "http_504", None)
    assert type(error) is ApiError and error.category == "http_504"


def test_status_fields_and_what_they_mean() -> None:
    decoded = decode_status(orjson.dumps({"code": 429, "message": "slow down", "details": {"retryAfterSeconds": 7}}))
    assert (decoded.code, decoded.message, decoded.retry_after) == (429, "slow down", 7.0)
    assert isinstance(status_error(410, decode_status(b'{"code": 410, "message": "too old"}'), "http_410", None), Gone)
    assert decode_status(b"<html>bad gateway</html>").message == "<html>bad gateway</html>"
    assert decode_status(b"").message == "no message"
    odd = decode_status(orjson.dumps({"code": True, "details": {"causes": "x", "retryAfterSeconds": "1"}}))
    assert (odd.code, odd.causes, odd.retry_after, odd.message) == (None, (), None, "no message")


def _bookmark(annotations: Any, version: str = "42") -> bytes:
    meta: dict[str, Any] = {"resourceVersion": version, "creationTimestamp": None}
    if annotations is not None:
        meta["annotations"] = annotations
    return orjson.dumps({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1", "metadata": meta, "spec": {"containers": None}}})


@pytest.mark.parametrize(
    "annotations, ends",
    [
        ({"k8s.io/initial-events-end": "true"}, True),
        ({"k8s.io/initial-events-end": "false"}, False),
        ({"k8s.io/initial-events-end": True}, False),  # the API server writes the string "true"
        ({"note": "k8s.io/initial-events-end"}, False),  # the words elsewhere in the line
        (None, False),
    ],
)
def test_the_bookmark_that_ends_a_streaming_lists_initial_events(annotations: Any, ends: bool) -> None:
    line = _bookmark(annotations)
    for decode in (decode_event, decode_event_tolerantly):
        event = decode(line)
        assert event is not None and event.kind == "BOOKMARK" and event.version == "42"
        assert event.initial_events_end is ends
