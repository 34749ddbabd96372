"""Pod list files: `kubectl get pods -A -o json|yaml` output, or multi-document YAML of Pods."""

from __future__ import annotations

import logging
import mmap
import os
import re
from array import array
from collections.abc import Callable, Generator, Iterator
from typing import NamedTuple

import msgspec
import orjson
import yaml

from ..errors import SourceError
from ..model import PodRecord, serves_identity, shown
from .childproc import ChildFailed, ChildStream, stream_from_child
from .filewatch import file_signature
from .podjson import LIST_DECODER, OtherKind, file_item_record
from .pods import strip_pod
from .problems import DUPLICATE_UID, NOT_A_POD, ItemProblems, LoadStats

log = logging.getLogger("pod_identity_dns.podfile")

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


BATCH_PODS = 2000
DEFAULT_MEMORY_LIMIT = 512 << 20  # --pods-file-memory-limit


class PodRecords(list[PodRecord]):
    """One whole load of a pod file: its records, in a list as a sink takes them, and what the load found."""

    def __init__(self, records: list[PodRecord], stats: LoadStats):
        super().__init__(records)
        self.stats = stats


def parse_pod_file(path: str, memory_limit: int | None = DEFAULT_MEMORY_LIMIT) -> PodRecords:
    """Every Pod in the file, stripped. SourceError when the file cannot be read or parsed."""
    load = PodFileLoad(path, memory_limit)
    records = [pod for batch in load for pod in batch]
    assert load.stats is not None  # set once every batch is taken
    return PodRecords(records, load.stats)


class PodFileLoad:
    """The file's Pods in batches, decoded in a child process (started now) while the caller takes them.

    Iterating raises SourceError when the file cannot be read or parsed,
    possibly after some batches: a caller that must not apply half a file
    collects them first. `stats` is set once every batch has been taken.
    `memory_limit`: bytes the decoding may allocate (see decode_pod_file).
    """

    def __init__(self, path: str, memory_limit: int | None = DEFAULT_MEMORY_LIMIT):
        self.path = path
        self.stats: LoadStats | None = None
        # Mapped only where the decoding runs in a child (os.fork): see decode_pod_file.
        mapped = hasattr(os, "fork")
        self._rows: ChildStream = stream_from_child(lambda: _rows(decode_pod_file(path, mapped, memory_limit)), memory_limit)

    def __iter__(self) -> Iterator[list[PodRecord]]:
        # Plain tuples cross the pipe: unpickling a NamedTuple calls its Python-level __new__.
        make = tuple.__new__
        rows = self._rows
        try:
            for batch in rows:
                yield [make(PodRecord, row) for row in batch]
        except ChildFailed as exc:
            raise SourceError(self.path, None, str(exc)) from None
        finally:
            rows.close()
        self.stats = rows.result


def pod_file_batches(path: str, memory_limit: int | None = DEFAULT_MEMORY_LIMIT) -> PodFileLoad:
    """The file's Pods in batches (a PodFileLoad, started now)."""
    return PodFileLoad(path, memory_limit)


def _rows(batches: Generator[list[PodRecord], None, LoadStats]) -> Generator[list[tuple], None, LoadStats]:
    while True:
        try:
            batch = next(batches)
        except StopIteration as stop:
            return stop.value
        yield [tuple(pod) for pod in batch]


class StartedPodFile(NamedTuple):
    """A pod file whose decoding has begun, with what stat() said before it did."""

    signature: tuple  # a change after this is a change to read again
    batches: PodFileLoad


def start_pod_file(path: str, memory_limit: int | None = DEFAULT_MEMORY_LIMIT) -> StartedPodFile:
    """pod_file_batches, with the file's signature taken first (see filewatch)."""
    return StartedPodFile(file_signature(path), pod_file_batches(path, memory_limit))


def decode_pod_file(
    path: str, mapped: bool = False, memory_limit: int | None = DEFAULT_MEMORY_LIMIT
) -> Generator[list[PodRecord], None, LoadStats]:
    """The file's Pods in batches, in this process; returns what the load found.

    `mapped` reads the file through mmap rather than into a copy: at 100k pods
    that is 300 MB the process never allocates. Only for a child process: a
    file truncated while mapped kills the reader with SIGBUS. A MemoryError
    (the child's `memory_limit`, see childproc) becomes a SourceError that
    says what to do about it.
    """
    raw = _read(path, mapped)
    first = _FIRST_CHARACTER.search(raw)
    if first is None:
        # Most likely caught mid-write; an empty cluster is `items: []`.
        raise SourceError(path, None, "the file is empty (write a List with `items: []` for no pods)")
    try:
        items = _json_list_items(raw) if first.group() == b"{" else None
    except MemoryError:
        raise SourceError(path, None, _too_large("JSON", memory_limit)) from None
    if items is None:
        json = first.group() in (b"{", b"[")
        try:
            pods, kept = parse_pod_documents_counted(path, _documents(path, raw[:]))
        except MemoryError:
            raise SourceError(path, None, _too_large("JSON" if json else "YAML", memory_limit)) from None
        del raw
        for start in range(0, len(pods), BATCH_PODS):
            yield pods[start : start + BATCH_PODS]
        return kept.finish()
    del raw  # the items hold the part of it they need

    def earlier(index: int) -> tuple[str, str, str] | None:
        try:
            pod = file_item_record(items[index], _ignore)
        except OtherKind:
            return None  # skipped, not a pod
        return pod.uid, f"item {index}", pod.key

    kept = _Kept(path, earlier)
    batch: list[PodRecord] = []
    problems = kept.problems
    for index, item in enumerate(items):
        problems.where = index  # formatted as "item N" only for a warning
        try:
            pod = file_item_record(item, problems.report)
        except OtherKind as other:
            problems.report(NOT_A_POD, "", _other_kind(other.kind, other.name))
            continue
        except (ValueError, TypeError) as exc:
            raise SourceError(path, None, f"item {index}: {exc}") from exc
        if kept.first_of_its_uid(pod, index):
            batch.append(pod)
            if len(batch) == BATCH_PODS:
                yield batch
                batch = []
    yield batch
    return kept.finish()


def _too_large(kind: str, memory_limit: int | None) -> str:
    limit = f"{memory_limit >> 20} MiB" if memory_limit else "the memory available"
    if kind == "YAML":
        return (
            f"the file is too large for YAML: decoding it needs more than --pods-file-memory-limit ({limit}), "
            "since YAML takes 17 to 40 times its size; write it as JSON (kubectl get pods -A -o json), "
            "which is decoded in a small fraction of that"
        )
    return f"decoding the file needs more than --pods-file-memory-limit ({limit}); raise the limit"


class _Kept:
    """Which items of one load are kept: the first of each metadata.uid. Counts what the load found.

    Two items with one uid would replace each other in the registry: the later
    is skipped, with a warning. Until an item repeats a uid only the uids'
    hashes are kept (2 MB at 100k pods, where the uids would take 30); the
    first repeat builds the index of every earlier item (`earlier(index)`:
    its uid, where it is and its pod's name), which only such a file pays for.
    """

    def __init__(self, path: str, earlier: Callable[[int], tuple[str, str, str] | None]):
        self.problems = ItemProblems(path)
        self._earlier = earlier
        self._hashes = _HashSet()
        self._first: dict[str, int] | None = None  # uid -> index, once a hash repeated

    def first_of_its_uid(self, pod: PodRecord, index: int) -> bool:
        """Whether `pod`, at `index` (as `earlier` counts), is the first of its uid; counted either way."""
        stats = self.problems.stats
        uid = pod.uid
        first = None
        if self._first is not None:
            first = self._first.setdefault(uid, index)
        elif self._hashes.add(hash(uid)):
            pass
        else:  # the same hash again: a repeat, most likely; look at every earlier item once
            self._first = {}
            for earlier in range(index):
                found = self._earlier(earlier)
                if found is not None:
                    self._first.setdefault(found[0], earlier)
            first = self._first.setdefault(uid, index)
        if first is None or first == index:
            stats.pods += 1
            if serves_identity(pod):
                stats.identities += 1
            return True
        stats.duplicates += 1
        _, where, key = self._earlier(first) or ("", "an earlier item", "?")
        self.problems.report(DUPLICATE_UID, pod.key, f"the same metadata.uid {shown(uid)} as {where} (pod {key}): skipped, {where} kept")
        return False

    def finish(self) -> LoadStats:
        return self.problems.finish()


class _HashSet:
    """A set of hashes in one array, open addressing: 16 bytes an entry, where a set of ints takes 80."""

    def __init__(self) -> None:
        self._slots = array("q", bytes(8 << 10))  # 0 marks a free slot
        self._count = 0

    def add(self, value: int) -> bool:
        """Add `value`; False if it was there already."""
        value = value or 1  # 0 is the free mark; a collision only costs a look at the earlier items
        slots = self._slots
        mask = len(slots) - 1
        slot = value & mask
        while True:
            held = slots[slot]
            if held == 0:
                break
            if held == value:
                return False
            slot = (slot + 1) & mask
        slots[slot] = value
        self._count += 1
        if self._count * 2 > len(slots):
            self._grow()
        return True

    def _grow(self) -> None:
        old, self._slots, self._count = self._slots, array("q", bytes(len(self._slots) * 16)), 0
        for value in old:
            if value:
                self.add(value)


def _other_kind(kind: object, name: object) -> str:
    return f"kind {shown(kind)} (named {shown(name)}), not a Pod: skipped"


def _ignore(reason: str, pod: str, message: str) -> None:
    """A Report for an item decoded a second time: its problems were told the first time."""


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
    return parse_pod_documents_counted(path, documents)[0]


def parse_pod_documents_counted(path: str, documents: list) -> tuple[list[PodRecord], _Kept]:
    """The Pods of parsed documents, and what was kept of them."""
    pods: list[PodRecord] = []
    places: list[str] = []  # where each kept pod is, for a duplicate's warning
    kept = _Kept(path, lambda index: (pods[index].uid, places[index], pods[index].key))
    problems = kept.problems
    several = len(documents) > 1
    for number, doc in enumerate(documents, 1):
        if isinstance(doc, list):
            items, single = doc, False
        elif not isinstance(doc, dict):
            raise SourceError(path, None, f"document {number} is not a Kubernetes object")
        elif doc.get("kind") == "Pod":
            items, single = [doc], True
        elif "items" in doc and isinstance(doc.get("items"), list):
            items, single = doc["items"], False
        else:
            raise SourceError(path, None, f"document {number} is kind {doc.get('kind')!r}, not a Pod or a list of Pods")
        for index, item in enumerate(items):
            if single:
                where = f"document {number}"
            else:
                where = f"document {number} item {index}" if several else f"item {index}"
            problems.where = where
            if isinstance(item, dict) and item.get("kind", "Pod") != "Pod":
                meta = item.get("metadata")
                problems.report(NOT_A_POD, "", _other_kind(item.get("kind"), meta.get("name") if isinstance(meta, dict) else None))
                continue
            try:
                pod = strip_pod(item, problems.report)
            except (ValueError, TypeError) as exc:
                raise SourceError(path, None, f"{where}: {exc}") from exc
            if kept.first_of_its_uid(pod, len(pods)):
                pods.append(pod)
                places.append(where)
    return pods, kept
