"""Serials secondaries can trust: derived from resourceVersions with the Kubernetes source, never backwards."""

from __future__ import annotations

import time

from server.model import StaticEntry
from server.registry import Registry, RegistrySettings
from server.sources.pods import strip_pod
from server.zone.names import to_wire
from server.zone.store import TIME_SERIAL_PATIENCE, ZoneSettings, ZoneStore, serial_after, wait_for_time_serial
from tests.helpers import ZONE, answer_text, ask, pod

APEX = to_wire(ZONE)
REVERSE = to_wire("244.10.in-addr.arpa")


def _registry() -> tuple[ZoneStore, Registry]:
    store = ZoneStore(ZoneSettings((ZONE,), ("10.244.0.0/16",)))
    return store, Registry(store, RegistrySettings(zone=ZONE))


def test_rfc1982_comparison_wraps():
    assert serial_after(2, 1)
    assert not serial_after(1, 2)
    assert serial_after(1, 0xFFFFFFFF)  # wrapped: 1 comes after 2**32 - 1
    assert not serial_after(5, 5)


def test_serials_follow_the_resource_version_of_the_last_change():
    store, registry = _registry()
    sink = registry.sink("kubernetes")
    sink.replace_all([strip_pod(pod("a", "10.244.1.1", "a", "s"))], version="1000")
    sink.set_synced(True)
    assert store.zones[APEX].serial == 1000 and store.zones[REVERSE].serial == 1000
    sink.update([strip_pod(pod("a", "10.244.1.2", "a", "s"))], [], version="1007")
    assert store.zones[APEX].serial == 1007
    sink.update([], [], version="1010")  # a bookmark-like batch that changes nothing
    assert store.zones[APEX].serial == 1007


def test_two_registries_fed_the_same_events_agree():
    def run() -> tuple[int, int]:
        store, registry = _registry()
        sink = registry.sink("kubernetes")
        sink.replace_all([strip_pod(pod(f"p{i}", f"10.244.1.{i}", f"p{i}", "s")) for i in range(1, 4)], version="500")
        sink.set_synced(True)
        sink.update([strip_pod(pod("p9", "10.244.1.9", "p9", "s"))], ["uid-default-p1"], version="512")
        return store.zones[APEX].serial, store.zones[REVERSE].serial

    assert run() == run() == (512, 512)


def test_a_version_that_would_go_backwards_counts_on_instead():
    store, registry = _registry()
    sink = registry.sink("kubernetes")
    sink.replace_all([strip_pod(pod("a", "10.244.1.1", "a", "s"))], version="9000")
    sink.set_synced(True)
    sink.update([strip_pod(pod("a", "10.244.1.2", "a", "s"))], [], version="100")  # an API server restored from backup
    assert store.zones[APEX].serial == 9001
    registry.replace_static([StaticEntry("10.244.0.9", (f"gw.{ZONE}",), 1)])  # a hosts change beside the cluster
    assert store.zones[APEX].serial == 9002


def test_file_sources_publish_the_time_once_synced_not_one_more_per_batch():
    store, registry = _registry()
    sink = registry.sink("pods-file")
    before = int(time.time())
    for batch in range(50):  # a big file arrives in batches: nothing is served, no serial moves
        sink.update([strip_pod(pod(f"p{batch}", f"10.244.2.{batch}", f"p{batch}", "s"))], [])
    sink.set_synced(True)
    serial = store.zones[APEX].serial
    assert before <= serial <= int(time.time())  # not the time plus 50: a restart cannot go below it
    sink.update([strip_pod(pod("p0", "10.244.3.1", "p0", "s"))], [])
    assert serial_after(store.zones[APEX].serial, serial)


def test_a_big_replace_in_steps_moves_the_serial_once_at_the_end():
    store, registry = _registry()
    sink = registry.sink("kubernetes")
    sink.replace_all([], version="10")
    sink.set_synced(True)
    pods = [strip_pod(pod(f"p{i}", f"10.244.{i // 250}.{i % 250 + 1}", f"p{i}", "s")) for i in range(4500)]
    steps = sink.replace_all_steps(pods, version="20")
    next(steps)  # the first step is written, the rest is to come
    assert store.busy and store.zones[APEX].serial == 10
    assert store.rrset(to_wire(f"p0.s.default.{ZONE}"), 1)
    for _ in steps:
        assert store.zones[APEX].serial == 10
    assert not store.busy and store.zones[APEX].serial == 20
    assert registry.stats()["forward_names"] == 4500


def test_a_relist_that_changes_one_pod_is_compared_in_steps_and_applies_that_one(monkeypatch):
    """Comparing a whole list with what is held yields too (100k records took the loop ~100 ms at once)."""
    from server.registry import steps as registry_steps

    monkeypatch.setattr(registry_steps, "STEP_COMPARES", 100)
    store, registry = _registry()
    sink = registry.sink("kubernetes")
    pods = [strip_pod(pod(f"p{i}", f"10.244.{i // 250}.{i % 250 + 1}", f"p{i}", "s")) for i in range(450)]
    sink.replace_all(pods, version="10")
    sink.set_synced(True)
    relisted = [*pods[:-1], strip_pod(pod("p449", "10.244.9.9", "p449", "s"))]
    yields = 0
    for _ in sink.replace_all_steps(relisted, version="20"):
        yields += 1
        assert store.zones[APEX].serial == 10 and not store.busy  # still comparing: nothing written yet
    assert yields >= 8  # 450 records read, then 450 compared, 100 at a time
    assert store.zones[APEX].serial == 20
    assert answer_text(ask(store, f"p449.s.default.{ZONE}")) == [f"p449.s.default.{ZONE}. 30 IN A 10.244.9.9"]
    assert registry.stats()["forward_names"] == 450


def test_a_big_hosts_file_is_applied_in_steps_to_the_same_result():
    entries = [StaticEntry(f"10.244.{i // 250}.{i % 250 + 1}", (f"h{i}.{ZONE}",), i + 1) for i in range(12_000)]
    store, registry = _registry()
    registry.sink("pods-file").set_synced(True)
    fresh_store, fresh = _registry()
    fresh.sink("pods-file").set_synced(True)
    fresh.replace_static(entries)
    serial = store.zones[APEX].serial
    steps = registry.replace_static_steps(entries)
    busy_steps = 0
    for _ in steps:
        busy_steps += store.busy  # busy while the writing is under way (not while the file is read)
        assert store.zones[APEX].serial == serial  # written step by step, one serial move at the end
    assert busy_steps >= 2 and not store.busy and serial_after(store.zones[APEX].serial, serial)
    records = {name: node.items() for name, node in store.nodes.items() if name not in store.zones}
    assert records == {name: node.items() for name, node in fresh_store.nodes.items() if name not in fresh_store.zones}
    assert registry.stats() == fresh.stats()


def test_a_time_serial_waits_for_the_clock_to_pass_the_serials_served():
    """File sources: a reload waits this long before it is applied, so its serial is the clock, never ahead."""
    store, registry = _registry()
    sink = registry.sink("pods-file")
    sink.replace_all([strip_pod(pod("a", "10.244.1.1", "a", "s"))])
    sink.set_synced(True)
    zones = list(store.zones.values())
    serial = store.zones[APEX].serial
    assert wait_for_time_serial(zones, serial + 5.5) == 0.0  # long behind the clock
    assert wait_for_time_serial(zones, serial + 1.0) == 0.0  # the clock has passed it
    assert abs(wait_for_time_serial(zones, serial + 0.25) - 0.75) < 1e-6  # the same second: until the next one
    store.zones[APEX].set_serial((serial + 1) & 0xFFFFFFFF)  # one past the clock: two seconds' worth
    assert abs(wait_for_time_serial(zones, serial + 0.25) - 1.75) < 1e-6
    store.zones[APEX].set_serial((serial + TIME_SERIAL_PATIENCE + 1) & 0xFFFFFFFF)  # the clock set back: no waiting
    assert wait_for_time_serial(zones, serial + 0.25) == 0.0
