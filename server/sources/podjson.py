"""Decoding Pod JSON straight into PodRecords with msgspec schemas of the few fields used.

A pod is ~5-20 KB of JSON of which a PodRecord needs a few dozen bytes. These
schemas make msgspec skip the rest without building objects for it (6x faster
than orjson.loads, and no garbage to collect or to pin memory). A list item
they reject (a field of an unexpected type) is decoded again untyped and
stripped by strip_pod, alone; a rejected watch event is the caller's to decode
again. Used by the watch and the pod file.
"""

from __future__ import annotations

import msgspec

from ..model import PodRecord
from .pods import pod_record, strip_pod, warn_once
from .problems import Report


class Meta(msgspec.Struct, gc=False):
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    creationTimestamp: str | None = None
    deletionTimestamp: str | None = None
    resourceVersion: str | None = None


class ContainerPort(msgspec.Struct, gc=False):
    name: str | None = None
    containerPort: int | None = None
    protocol: str | None = None


class Container(msgspec.Struct, gc=False):
    ports: list[ContainerPort] | None = None


class Spec(msgspec.Struct, gc=False):
    hostname: str | None = None
    subdomain: str | None = None
    hostnameOverride: str | None = None
    hostNetwork: bool | None = None
    containers: list[Container] | None = None


class PodIP(msgspec.Struct, gc=False):
    ip: str | None = None


class Condition(msgspec.Struct, gc=False):
    type: str | None = None
    status: str | None = None
    lastTransitionTime: str | None = None


class PodStatus(msgspec.Struct, gc=False):
    phase: str | None = None
    podIP: str | None = None
    podIPs: list[PodIP] | None = None
    conditions: list[Condition] | None = None


class PodObject(msgspec.Struct, gc=False):
    """A Pod, or in an ERROR event the Status (whose `status` is the string "Failure")."""

    kind: str | None = None  # in a pod file's list; the API leaves it out of its lists' items
    metadata: Meta | None = None
    spec: Spec | None = None
    status: PodStatus | str | None = None
    code: int | None = None
    message: str | None = None
    reason: str | None = None


class ListMeta(msgspec.Struct, gc=False):
    resourceVersion: str | None = None
    continue_: str | None = msgspec.field(default=None, name="continue")


class PodList(msgspec.Struct, gc=False):
    """A List whose items are decoded one at a time (`item_record`).

    Decoding them all at once would keep 100k decoded Pods alive together, and
    the records allocated among them would pin that memory after it is freed.
    """

    kind: str | None = None
    metadata: ListMeta | None = None
    items: list[msgspec.Raw] | None = None


class Event(msgspec.Struct, gc=False):
    type: str | None = None
    object: PodObject | None = None


LIST_DECODER = msgspec.json.Decoder(PodList)
POD_DECODER = msgspec.json.Decoder(PodObject)
EVENT_DECODER = msgspec.json.Decoder(Event)
_NO_SPEC = Spec()
_NO_STATUS = PodStatus()


def record(obj: PodObject, report: Report = warn_once) -> PodRecord:
    """The PodRecord of one decoded Pod; ValueError when it is not a usable Pod (values it skips go to `report`)."""
    meta = obj.metadata
    if meta is None:
        raise ValueError("no metadata")
    if not meta.name:
        raise ValueError("no metadata.name")
    spec = obj.spec or _NO_SPEC
    status = obj.status if isinstance(obj.status, PodStatus) else _NO_STATUS
    return pod_record(
        meta.name,
        meta.namespace,
        meta.uid,
        meta.creationTimestamp,
        meta.deletionTimestamp,
        spec.hostname,
        spec.subdomain,
        spec.hostNetwork is True,
        status.phase,
        [entry.ip for entry in status.podIPs or ()],
        status.podIP,
        [(cond.type, cond.status, cond.lastTransitionTime) for cond in status.conditions or ()],
        report,
        tuple((port.name, port.protocol, port.containerPort) for c in spec.containers or () for port in c.ports or () if port.name),
        spec.hostnameOverride,
    )


def item_record(item: msgspec.Raw, report: Report = warn_once) -> PodRecord:
    """The PodRecord of one list item; ValueError or TypeError when it is not a usable Pod.

    An item the schemas reject (a field of an unexpected type) is decoded again
    untyped and stripped by strip_pod, which tolerates what it can.
    """
    try:
        return record(POD_DECODER.decode(item), report)
    except msgspec.ValidationError:
        return strip_pod(msgspec.json.decode(item), report)
    except msgspec.DecodeError as exc:
        raise ValueError(f"unreadable JSON: {exc}") from None


class OtherKind(ValueError):
    """A list item that is an object of another kind than Pod."""

    def __init__(self, kind: object, name: object):
        super().__init__(f"kind {kind!r}, not a Pod")
        self.kind, self.name = kind, name


def file_item_record(item: msgspec.Raw, report: Report = warn_once) -> PodRecord:
    """item_record of a pod file's list item, which may name its kind: OtherKind when that is not Pod."""
    try:
        obj = POD_DECODER.decode(item)
    except msgspec.ValidationError:
        untyped = msgspec.json.decode(item)
        if isinstance(untyped, dict) and untyped.get("kind", "Pod") != "Pod":
            meta = untyped.get("metadata")
            raise OtherKind(untyped.get("kind"), meta.get("name") if isinstance(meta, dict) else None) from None
        return strip_pod(untyped, report)
    except msgspec.DecodeError as exc:
        raise ValueError(f"unreadable JSON: {exc}") from None
    if obj.kind is not None and obj.kind != "Pod":
        raise OtherKind(obj.kind, obj.metadata.name if obj.metadata is not None else None)
    return record(obj, report)
