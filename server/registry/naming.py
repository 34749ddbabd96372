"""Naming: the identity name a pod asks for and its set's name.

The name is the pod's spec.hostnameOverride when that lies in a served
forward zone (what the pod sees as its own hostname), else the
--name-template under the first zone. The set is the template name's parent
either way, when the pod has hostname and subdomain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..model import PodRecord
from ..zone import names

log = logging.getLogger("pod_identity_dns.registry")

SUFFIX_CACHE_LIMIT = 100_000
WARNED_LIMIT = 100_000
PLAIN_TEMPLATE = "{hostname}.{subdomain}.{namespace}"


class Naming:
    """Builds identity names; the default template's names come from a cached suffix per set."""

    def __init__(
        self,
        zone: str,
        template: str,
        reserved: Callable[[bytes], bool] = lambda name: False,
        is_apex: Callable[[bytes], bool] = lambda name: False,
        in_forward_zone: Callable[[bytes], bool] = lambda name: False,
    ):
        self.template = template
        self._zone_suffix = zone.strip().rstrip(".").lower()
        # Set names exist only when the template's first label is the hostname: its parent is the set.
        self.sets_enabled = template.startswith("{hostname}.")
        self._plain = template == PLAIN_TEMPLATE
        self._suffixes: dict[tuple[str, str], bytes] = {}
        self._reserved = reserved
        self._is_apex = is_apex
        self._in_forward_zone = in_forward_zone
        self._warned: set[str] = set()

    def identity(self, pod: PodRecord) -> tuple[bytes, bytes | None] | None:
        """The pod's identity name and its set's name (None: no set), or None when it gets no name."""
        template = self.identity_name(pod) if pod.hostname and pod.subdomain else None
        set_name = template[1] if template is not None and self.sets_enabled and not self._is_apex(template[1]) else None
        if pod.hostname_override:
            override: bytes | None = None
            try:
                override = names.to_wire(pod.hostname_override)
            except ValueError as exc:
                reason = str(exc)
            else:
                reason = "" if self._in_forward_zone(override) else "it is outside every --zone"
            if override is not None and not reason:
                if self._reserved(override):
                    self._warn(pod, f"{names.to_text(override)} is the server's own name server name")
                    return None
                return override, set_name
            self._warn(
                pod, f"spec.hostnameOverride {pod.hostname_override!r} gives no name ({reason}); the template name serves", "override"
            )
        if template is None:
            return None
        return template[0], set_name

    def identity_name(self, pod: PodRecord) -> tuple[bytes, bytes] | None:
        """The pod's name and that name's parent (its set's name), as wire bytes; None when no valid name."""
        if self._plain:
            suffix = self._suffixes.get((pod.subdomain, pod.namespace))
            if suffix is None:
                suffix = self._set_suffix(pod.subdomain, pod.namespace)
            label = pod.hostname
            # What to_wire would make of the whole text, without splitting it again.
            if (
                suffix
                and "." not in label
                and label.isascii()
                and 0 < len(label) <= names.MAX_LABEL
                and label.strip() == label
                and len(label) + len(suffix) < names.MAX_NAME
            ):
                name = bytes((len(label),)) + label.encode() + suffix  # pod_record lower-cased it
                return self._unreserved(pod, name, suffix)
        text = self.template.format(hostname=pod.hostname, subdomain=pod.subdomain, namespace=pod.namespace, pod=pod.name)
        try:
            name = names.to_wire(f"{text}.{self._zone_suffix}")
        except ValueError as exc:
            self._warn(pod, str(exc))
            return None
        return self._unreserved(pod, name, names.parent(name))

    def _unreserved(self, pod: PodRecord, name: bytes, parent: bytes) -> tuple[bytes, bytes] | None:
        if self._reserved(name) or self._reserved(parent):
            self._warn(pod, f"{names.to_text(name)} is the server's own name server name")
            return None
        return name, parent

    def _warn(self, pod: PodRecord, reason: str, kind: str = "name") -> None:
        """Once per pod and kind: a pod that gets no name, or whose override is not used."""
        key = f"{kind}/{pod.uid}"
        if key in self._warned:
            return
        if len(self._warned) >= WARNED_LIMIT:
            self._warned.clear()
        self._warned.add(key)
        if kind == "name":
            log.warning("pod %s gets no name: %s", pod.key, reason)
        else:
            log.warning("pod %s: %s", pod.key, reason)

    def _set_suffix(self, subdomain: str, namespace: str) -> bytes:
        """The wire form of `subdomain.namespace.zone`, cached; b"" when it is no valid name."""
        if len(self._suffixes) >= SUFFIX_CACHE_LIMIT:
            self._suffixes.clear()
        try:
            suffix = names.to_wire(f"{subdomain}.{namespace}.{self._zone_suffix}")
        except ValueError:
            suffix = b""
        if subdomain != subdomain.lstrip():
            suffix = b""  # to_wire would strip what is inside the whole name: leave it to the text path
        self._suffixes[(subdomain, namespace)] = suffix
        return suffix
