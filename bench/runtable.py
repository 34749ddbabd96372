"""The table of bench/run.py: ours (batched UDP) and Knot side by side, ours (uvloop UDP) for reference.

Run labels: A<i> ours with --udp-frontend batched, B<i> Knot, U<i> ours with
--udp-frontend uvloop, one of each per round and back to back; LA<i>, LB<i>,
LU<i> the fixed-rate latency runs, in rounds the same way; C the dnslib baseline.
"""

from __future__ import annotations

import os
import statistics

TARGET_RATIO, TARGET_CPU, TARGET_LATENCY, TARGET_START, TARGET_RSS = 0.85, 1.2, 2.0, 3.0, 200.0
STARTS = 3  # server starts timed; the median is reported


def fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def render(args, cluster, mix, size, perf_opts, runs, ours_start, knot_start, mem_start, mem, knot_mem) -> str:
    r = runs
    rounds = [str(i) for i in range(1, args.rounds + 1)]
    rows: list[tuple[str, ...]] = []

    def add(metric, batched="", knot="", uvloop="", ratio="", target=""):
        rows.append((metric, batched, knot, uvloop, ratio, target))

    ratios = {key: [r[key + i].qps / r["B" + i].qps for i in rounds] for key in ("A", "U")}
    for i in rounds:
        a, b, u = r["A" + i], r["B" + i], r["U" + i]
        add(
            f"throughput, round {i} (qps)  [A{i} B{i} U{i}]",
            fmt_int(a.qps),
            fmt_int(b.qps),
            fmt_int(u.qps),
            f"{a.qps / b.qps:.2f} (uvloop {u.qps / b.qps:.2f})",
        )
    median = {key: statistics.median(values) for key, values in ratios.items()}
    add(
        f"ours / Knot, median of {len(rounds)} rounds",
        "",
        "",
        "",
        f"{median['A']:.2f} (uvloop {median['U']:.2f})",
        f">= {TARGET_RATIO} ({verdict(median['A'] >= TARGET_RATIO)})",
    )
    mean = {key: statistics.mean(r[key + i].qps for i in rounds) for key in "ABU"}
    add("throughput, mean (qps)", fmt_int(mean["A"]), fmt_int(mean["B"]), fmt_int(mean["U"]), f"{mean['A'] / mean['B']:.2f}")
    us = {key: statistics.mean(r[key + i].server_us_per_query for i in rounds) for key in "ABU"}
    add(
        "server CPU per query, mean (µs)",
        f"{us['A']:.2f}",
        f"{us['B']:.2f}",
        f"{us['U']:.2f}",
        f"{us['A'] / us['B']:.2f}x Knot's (uvloop {us['U'] / us['B']:.2f}x)",
        f"<= {TARGET_CPU}x ({verdict(us['A'] / us['B'] <= TARGET_CPU)})",
    )

    def per_round(field: str, fmt: str = "{:.0f}", scale: float = 1.0) -> tuple[str, str, str]:
        return tuple(" / ".join(fmt.format(getattr(r[key + i], field) * scale) for i in rounds) for key in "ABU")  # type: ignore[return-value]

    what = " / ".join(rounds)
    add(f"  server CPU, rounds {what} (% of a core)", *per_round("server_cpu"))
    add(f"  server CPU per query, rounds {what} (µs)", *per_round("server_us_per_query", "{:.2f}"))
    add(f"  dnsperf CPU, rounds {what} (% of a core)", *per_round("dnsperf_cpu"))
    add(f"  softirq, rounds {what} (% of a core)", *per_round("softirq_cpu"))
    add(f"  other processes, rounds {what} (% of a core)", *per_round("other_cpu"))
    add("  machine busy before each run (% of a core)", *per_round("busy_before"))
    add("  attempts (disturbed runs repeated)", *per_round("attempts"))
    add(f"  avg latency at full load, rounds {what} (ms)", *per_round("avg_latency", "{:.2f}", 1e3))
    add(f"  queries lost, rounds {what}", *per_round("lost"))

    lat = {key: statistics.median(r[f"L{key}{i}"].avg_latency for i in rounds) for key in "ABU"}
    add(
        f"avg latency at {args.rate:,} qps, median of {len(rounds)} rounds (ms)",
        *(f"{lat[key] * 1e3:.3f}" for key in "ABU"),
        f"{lat['A'] / lat['B']:.2f}x Knot's, {lat['A'] / lat['U']:.2f}x uvloop's",
        f"<= uvloop's ({verdict(lat['A'] <= lat['U'])}), <= {TARGET_LATENCY}x Knot's ({verdict(lat['A'] / lat['B'] <= TARGET_LATENCY)})",
    )

    def fixed_rate(field: str, fmt: str, scale: float = 1.0) -> tuple[str, ...]:
        return tuple(" / ".join(fmt.format(getattr(r[f"L{key}{i}"], field) * scale) for i in rounds) for key in "ABU")

    add(f"  avg latency at {args.rate:,} qps, rounds {what} (ms)", *fixed_rate("avg_latency", "{:.3f}", 1e3))
    add(f"  latency stddev at {args.rate:,} qps, rounds {what} (ms)", *fixed_rate("latency_sd", "{:.3f}", 1e3))
    add(f"  achieved qps at {args.rate:,} qps, rounds {what}", *fixed_rate("qps", "{:,.0f}"))
    add(f"  server CPU per query at {args.rate:,} qps, rounds {what} (µs)", *fixed_rate("server_us_per_query", "{:.1f}"))
    add(f"  other processes at {args.rate:,} qps, rounds {what} (% of a core)", *fixed_rate("other_cpu", "{:.0f}"))
    target_start = f"<= {TARGET_START} s at 100k" + (f" ({verdict(ours_start <= TARGET_START)})" if args.pods >= 100_000 else "")
    add(
        f"start -> first answer, {args.pods:,} pods, median of {STARTS} (s)",
        f"{ours_start:.2f}",
        f"{knot_start:.2f} (zone files)",
        "",
        "",
        target_start,
    )
    target_rss = f"<= {TARGET_RSS:.0f} MiB at 100k" + (f" ({verdict(mem['VmHWM'] <= TARGET_RSS)})" if args.pods >= 100_000 else "")
    add("RSS peak, VmHWM (MiB)", f"{mem['VmHWM']:.0f}", f"{knot_mem['VmHWM']:.0f}", "", "", target_rss)
    add("RSS after the runs, VmRSS (MiB)", f"{mem['VmRSS']:.0f}", f"{knot_mem['VmRSS']:.0f}")
    add("  VmRSS right after start (MiB)", f"{mem_start['VmRSS']:.0f}")
    if "C" in r:
        add("dnslib baseline throughput (qps)  [C]", fmt_int(r["C"].qps), "", "", f"ours/dnslib {mean['A'] / r['C'].qps:.1f}x")
        add(
            "  dnslib baseline CPU per query (µs)",
            f"{r['C'].server_us_per_query:.1f}",
            "",
            "",
            f"ours/dnslib {r['C'].server_us_per_query / us['A']:.1f}x less",
        )

    head = ("metric", "ours (batched UDP)", "Knot (1 UDP worker)", "ours (uvloop UDP)", "ours/Knot", "target")
    widths = [max(len(row[i]) for row in rows + [head]) for i in range(len(head))]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [
        f"pod-identity-dns benchmark: {len(cluster.pods):,} pods ({cluster.dual_stack:,} dual-stack, {len(cluster.sets):,} StatefulSets, "
        f"IPv4 {cluster.cidr4}), pod file {size / 2**20:.1f} MiB",
        f"query mix: A {mix['A']}%, AAAA {mix['AAAA']}%, PTR {mix['PTR']}%, NXDOMAIN {mix['NX-forward'] + mix['NX-reverse']:.1f}% "
        f"(forward {mix['NX-forward']}%, reverse {mix['NX-reverse']}%), EDNS on every other query; {mix['queries']:,} distinct queries",
        f"dnsperf -B {' '.join(perf_opts)} -l {args.duration:g} (fixed rate: -T 1 -c 10 -q 100 -Q {args.rate}); {os.cpu_count()} CPUs; "
        f"ours batched with --udp-batch {args.udp_batch}",
        "",
        line(head),
        "|-" + "-|-".join("-" * w for w in widths) + "-|",
        *(line(row) for row in rows),
    ]
    return "\n".join(out)
