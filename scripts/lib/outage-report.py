#!/usr/bin/env python3
"""Tables of stack-redis-outage.sh from the probes' raw lines.

usage: outage-report.py OUT_DIR

Reads OUT_DIR/<impl>-<fault>.txt (lines "phase endpoint status latency_ms since_fault_end_s"
from outage-probe.py) and prints, per fault, one Markdown table: per implementation and
endpoint, the median and max latency before / during / after the fault, the requests that
did not answer 2xx during it, and when the endpoint was last seen failing after Redis came
back (a non-2xx answer, or one slower than 100 ms), in seconds after the fault ended.
"""
import math
import os
import statistics
import sys

ENDPOINTS = ["hello", "login", "session", "limited", "cached", "json"]
FAULTS = [("pause", "Redis paused 3 s (SIGSTOP)"),
          ("restart", "Redis killed, restarted empty after 3 s"),
          ("drop", "every packet to and from Redis dropped for 3 s (iptables)")]


def fmt(ms):
    return "-" if ms is None else (f"{ms:.0f}" if ms >= 10 else f"{ms:.1f}")


def main():
    out_dir = sys.argv[1]
    impls = []
    for name in sorted(os.listdir(out_dir)):
        if name.endswith(".txt") and "-" in name and not name.startswith("wrk-"):
            impl = name[:-4].rsplit("-", 1)[0]
            if impl not in impls and any(name.endswith(f"-{f}.txt") for f, _ in FAULTS):
                impls.append(impl)
    order = ["tower-scale", "rust-tower", "node-express"]
    impls.sort(key=lambda i: order.index(i) if i in order else len(order))
    for fault, title in FAULTS:
        rows = []
        for impl in impls:
            path = os.path.join(out_dir, f"{impl}-{fault}.txt")
            if not os.path.exists(path):
                continue
            lines = [l.split() for l in open(path) if l.strip()]
            for ep in ENDPOINTS:
                cells = [impl, f"`/{ep}`"]
                for phase in ("before", "during", "after"):
                    lat = [float(l[3]) for l in lines if l[0] == phase and l[1] == ep]
                    cells.append(f"{fmt(statistics.median(lat) if lat else None)} / "
                                 f"{fmt(max(lat) if lat else None)}")
                failed = sum(1 for l in lines
                             if l[0] == "during" and l[1] == ep and not l[2].startswith("2"))
                total = sum(1 for l in lines if l[0] == "during" and l[1] == ep)
                cells.append(f"{failed} of {total}")
                bad = [float(l[4]) + float(l[3]) / 1000 for l in lines
                       if l[0] == "after" and l[1] == ep
                       and (not l[2].startswith("2") or float(l[3]) > 100)
                       and not math.isnan(float(l[4]))]
                cells.append(f"{max(bad):.2f} s" if bad else "at once")
                rows.append(cells)
        if not rows:
            continue
        print(f"\n{title}: median / max latency in ms\n")
        print("| implementation | endpoint | before | during | after | non-2xx during | failing until |")
        print("|---|---|---|---|---|---|---|")
        for cells in rows:
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
