"""Crowds: many pods claiming one name (a Deployment that sets hostname and subdomain) or one IP.

    .venv/bin/python bench/crowds.py [--sizes 2000,20000,100000]

For each size, in process: the time to apply the whole crowd at once (a
list), the mean time of a change to one of the losers, and of the owner
going away and coming back (then every pair changes winner: linear in the
crowd by nature), for a crowd on one name and on one IP. Before: 20k pods
sharing a name took 36 s to apply, 100k did not finish in 60 s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.registry import Registry, RegistrySettings
from server.sources.pods import pod_record
from server.zone.store import ZoneSettings, ZoneStore

ZONE = "pods.example.internal"


def pod(index: int, ip: str, same_name: bool):
    return pod_record(
        f"web-{index}",
        "default",
        f"uid-{index}",
        f"2026-11-01T{index // 3600 % 24:02d}:{index // 60 % 60:02d}:{index % 60:02d}Z",
        None,
        "web" if same_name else f"web-{index}",
        "web",
        False,
        "Running",
        [ip],
        None,
        [],
    )


def ip_of(index: int) -> str:
    return f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}"


def run(size: int, same_name: bool) -> tuple[float, float]:
    store = ZoneStore(ZoneSettings((ZONE,), ("10.0.0.0/8",)))
    registry = Registry(store, RegistrySettings(zone=ZONE))
    sink = registry.sink("bench")
    pods = [pod(i, ip_of(i) if same_name else "10.250.0.1", same_name) for i in range(size)]
    started = time.perf_counter()
    sink.replace_all(pods)
    sink.set_synced(True)
    batch = time.perf_counter() - started
    changes = 200
    started = time.perf_counter()
    for step in range(1, changes + 1):  # a loser's IP moves (one name) or a loser restarts (one IP)
        index = (step * 7919) % (size - 1) + 1
        sink.upsert(pod(index, ip_of(size + step) if same_name else "10.250.0.1", same_name))
    single = (time.perf_counter() - started) / changes
    started = time.perf_counter()
    for _ in range(3):  # the owner goes (every pair changes winner), and comes back
        sink.delete("uid-0")
        sink.upsert(pods[0])
    owner = (time.perf_counter() - started) / 6
    assert registry.stats()["conflicts"] >= size - 1
    return batch, single, owner


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000,20000,100000")
    args = parser.parse_args()
    print(f"{'crowd':<10} {'pods':>8} {'batch (s)':>10} {'per pod (µs)':>13} {'a loser changes (ms)':>21} {'the owner changes (ms)':>23}")
    for same_name, label in ((True, "one name"), (False, "one IP")):
        for size in (int(s) for s in args.sizes.split(",")):
            batch, single, owner = run(size, same_name)
            print(f"{label:<10} {size:>8,} {batch:>10.2f} {batch / size * 1e6:>13.1f} {single * 1e3:>21.3f} {owner * 1e3:>23.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
