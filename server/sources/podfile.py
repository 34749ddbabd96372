"""Pod list files: `kubectl get pods -A -o json|yaml` output, or multi-document YAML of Pods."""

from __future__ import annotations

import logging
import mmap
import os
import re
from collections.abc import Iterator
from typing import NamedTuple

import msgspec
import orjson
import yaml

from ..errors import SourceError
from ..model import PodRecord
from .childproc import ChildFailed, stream_from_child
from .filewatch import file_signature
from .podjson import LIST_DECODER, item_record
from .pods import strip_pod

log = logging.getLogger("pod_identity_dns.podfile")

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


BATCH_PODS = 2000


def parse_pod_file(path: str) -> list[PodRecord]:
    """Every Pod in the file, stripped. SourceError when the file cannot be read or parsed."""
    return [pod for batch in pod_file_batches(path) for pod in batch]


def pod_file_batches(path: str) -> Iterator[list[PodRecord]]:
    """The file's Pods in batches, decoded in a child process (started now) while the caller takes them.

    Iterating raises SourceError when the file cannot be read or parsed,
    possibly after some batches: a caller that must not apply half a file
    collects them first.
    """
    # Mapped only where the decoding runs in a child (os.fork): see decode_pod_file.
    mapped = hasattr(os, "fork")
    rows = stream_from_child(lambda: ([tuple(pod) for pod in batch] for batch in decode_pod_file(path, mapped)))
    return _records(path, rows)


class StartedPodFile(NamedTuple):
    """A pod file whose decoding has begun, with what stat() said before it did."""

    signature: tuple  # a change after this is a change to read again
    batches: Iterator[list[PodRecord]]


def start_pod_file(path: str) -> StartedPodFile:
    """pod_file_batches, with the file's signature taken first (see filewatch)."""
    return StartedPodFile(file_signature(path), pod_file_batches(path))


def _records(path: str, batches: Iterator[list[tuple]]) -> Iterator[list[PodRecord]]:
    # Plain tuples cross the pipe: unpickling a NamedTuple calls its Python-level __new__.
    make = tuple.__new__
    try:
        for rows in batches:
            yield [make(PodRecord, row) for row in rows]
    except ChildFailed as exc:
        raise SourceError(path, None, str(exc)) from None
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def decode_pod_file(path: str, mapped: bool = False) -> Iterator[list[PodRecord]]:
    """pod_file_batches, in this process.

    `mapped` reads the file through mmap rather than into a copy: at 100k pods
    that is 300 MB the process never allocates. Only for a child process: a
    file truncated while mapped kills the reader with SIGBUS.
    """
    raw = _read(path, mapped)
    first = _FIRST_CHARACTER.search(raw)
    if first is None:
        # Most likely caught mid-write; an empty cluster is `items: []`.
        raise SourceError(path, None, "the file is empty (write a List with `items: []` for no pods)")
    items = _json_list_items(raw) if first.group() == b"{" else None
    if items is None:
        pods = parse_pod_documents(path, _documents(path, raw[:]))
        del raw
        for start in range(0, len(pods), BATCH_PODS):
            yield pods[start : start + BATCH_PODS]
        return
    del raw  # the items hold the part of it they need
    batch: list[PodRecord] = []
    for index, item in enumerate(items):
        try:
            batch.append(item_record(item))
        except (ValueError, TypeError) as exc:
            raise SourceError(path, None, f"document 1 item {index}: {exc}") from exc
        if len(batch) == BATCH_PODS:
            yield batch
            batch = []
    yield batch


_FIRST_CHARACTER = re.compile(rb"\S")


def _read(path: str, mapped: bool) -> bytes | mmap.mmap:
    try:
        with open(path, "rb") as handle:
            if mapped and os.fstat(handle.fileno()).st_size:
                return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            return handle.read()
    except OSError as exc:
        raise SourceError(path, None, exc.strerror or str(exc)) from exc


def _json_list_items(raw: bytes | mmap.mmap) -> list | None:
    """The items of a JSON pod list (kubectl -o json), each still raw JSON; None to use the general path.

    Decoded one at a time afterwards: at 100k pods the general path's object
    tree is ~800 MiB, and records allocated among it would keep it pinned.
    """
    try:
        decoded = LIST_DECODER.decode(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None  # the general path reports what is wrong, with its line
    if decoded.items is None or decoded.kind == "Pod":
        return None
    return decoded.items


def _documents(path: str, raw: bytes) -> list:
    if raw.lstrip()[:1] in (b"{", b"["):
        try:
            return [orjson.loads(raw)]
        except orjson.JSONDecodeError as exc:
            raise SourceError(path, exc.lineno, f"invalid JSON: {exc.msg}") from exc
    try:
        return [doc for doc in yaml.load_all(raw, Loader=_Loader) if doc is not None]
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise SourceError(path, line, f"invalid YAML: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise SourceError(path, None, f"invalid YAML: {exc}") from exc


def parse_pod_documents(path: str, documents: list) -> list[PodRecord]:
    pods: list[PodRecord] = []
    for number, doc in enumerate(documents, 1):
        if isinstance(doc, list):
            items = doc
        elif not isinstance(doc, dict):
            raise SourceError(path, None, f"document {number} is not a Kubernetes object")
        elif doc.get("kind") == "Pod":
            items = [doc]
        elif "items" in doc and isinstance(doc.get("items"), list):
            items = doc["items"]
        else:
            raise SourceError(path, None, f"document {number} is kind {doc.get('kind')!r}, not a Pod or a list of Pods")
        for index, item in enumerate(items):
            if isinstance(item, dict) and item.get("kind", "Pod") != "Pod":
                log.warning("%s: document %d item %d is kind %r, ignored", path, number, index, item.get("kind"))
                continue
            try:
                pods.append(strip_pod(item))
            except (ValueError, TypeError) as exc:
                raise SourceError(path, None, f"document {number} item {index}: {exc}") from exc
    return pods
