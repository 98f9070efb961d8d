#!/usr/bin/env python3
"""Turns bench-compare.sh's raw lines into markdown tables of ratios and an SVG chart.

usage: side-by-side-report.py results.txt table.md chart.svg [redis.txt]

Each input line: "<round> <impl> <scenario> <requests_per_s> <p99_ms> <non2xx>" (or the same
without the round). Lines with NA (a failed run) are skipped. With several rounds, each figure
is the median of its rounds. Ratios are to bare axum's GET /hello measured in the same run, and
between tower-scale and each peer; with several rounds, the comparison with each peer also
counts the rounds in which tower-scale was ahead (each round's figures against the same
round's, the implementations having run one after the other).

With redis.txt (lines "<round> <impl> <scenario> <commands_per_request> <redis_us_per_request>"),
a second table: per scenario and implementation, Redis commands and Redis CPU µs per request
(medians of the rounds) and the requests one Redis core serves at that cost (10^6 / µs).
"""
import statistics
import sys
from collections import OrderedDict

BASE_IMPL, BASE_SCENARIO, OURS = "bare-axum", "hello", "tower-scale"
COLORS = {"tower-scale": "#4c72b0", "tower-scale-redis-hello": "#8fb3e0", "tower-scale-headers": "#a6c8ea", "rust-tower": "#dd8452",
          "node-express": "#55a868", "tower-scale-l1": "#2a4d7f", "tower-scale-no-local-copy": "#b8cfe8"}
EXTRA_COLORS = ["#c44e52", "#8172b3", "#937860"]


def load(path):
    samples = OrderedDict()  # (impl, scenario) -> [(rps, p99, non2xx)]
    by_round = {}  # (impl, scenario) -> {round: (rps, p99)}
    impls, scenarios, rounds = [], [], set()
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 5:
                parts = ["1"] + parts
            if len(parts) != 6:
                continue
            rnd, impl, scenario, rps, p99, non2xx = parts
            try:
                sample = (float(rps), float(p99), int(non2xx))
            except ValueError:
                continue  # NA: the run failed; run-scenarios.sh said why
            samples.setdefault((impl, scenario), []).append(sample)
            by_round.setdefault((impl, scenario), {})[rnd] = sample[:2]
            rounds.add(rnd)
            if impl not in impls:
                impls.append(impl)
            if scenario not in scenarios:
                scenarios.append(scenario)
    rows = {}
    for key, s in samples.items():
        rps = [x[0] for x in s]
        rows[key] = {
            "rps": statistics.median(rps),
            "p99": statistics.median(x[1] for x in s),
            "non2xx": max(x[2] for x in s),
            "n": len(s),
            "rps_spread": (max(rps) - min(rps)) / (2 * statistics.median(rps)) if len(s) > 1 else 0.0,
            "rounds": by_round[key],
        }
    return rows, impls, scenarios, len(rounds)


def fmt_rps(v):
    return f"{v:,.0f}"


def rounds_ahead(ours, peer):
    """In how many of the rounds both ran tower-scale had more requests/s, and a lower p99:
    "k/n, m/n"."""
    common = [r for r in ours["rounds"] if r in peer["rounds"]]
    rps = sum(ours["rounds"][r][0] > peer["rounds"][r][0] for r in common)
    p99 = sum(ours["rounds"][r][1] < peer["rounds"][r][1] for r in common)
    return f"{rps}/{len(common)}, {p99}/{len(common)}"


def table(rows, impls, scenarios, nrounds):
    base = rows.get((BASE_IMPL, BASE_SCENARIO))
    shown = [i for i in impls if i != BASE_IMPL]
    # Variants of tower-scale (e.g. tower-scale-redis-hello) are shown, but are not peers.
    peers = [i for i in shown if not i.startswith(OURS)]
    out = []
    if base:
        out.append(
            f"Baseline, measured in the same run: bare axum `GET /hello` = {fmt_rps(base['rps'])} req/s, "
            f"p99 {base['p99']:.2f} ms. "
            + (f"Each figure is the median of {nrounds} rounds (implementations interleaved)."
               if nrounds > 1 else "One round.")
            + "\n"
        )
    out.append("Requests/s (× bare axum `/hello`) and p99 in ms (× bare axum `/hello`'s p99):\n")
    out.append("| scenario | " + " | ".join(f"{i} req/s | {i} p99" for i in shown) + " |")
    out.append("|---" * (1 + 2 * len(shown)) + "|")
    non2xx = []
    for s in scenarios:
        if not any((i, s) in rows for i in shown):
            continue
        cells = [s]
        for i in shown:
            r = rows.get((i, s))
            if r is None:
                cells += ["–", "–"]
                continue
            spread = f" ±{100 * r['rps_spread']:.0f}%" if r["n"] > 1 else ""
            if base:
                cells += [f"{fmt_rps(r['rps'])}{spread} ({r['rps'] / base['rps']:.2f})",
                          f"{r['p99']:.2f} ({r['p99'] / base['p99']:.1f})"]
            else:
                cells += [f"{fmt_rps(r['rps'])}{spread}", f"{r['p99']:.2f}"]
            if r["non2xx"]:
                non2xx.append(f"{i} {s}: {r['non2xx']:,}")
        out.append("| " + " | ".join(cells) + " |")
    if nrounds > 1:
        out.append("\n±: half the range of the rounds' requests/s, relative to the median.")
    out.append("\nNon-2xx responses (wrk): " + ("; ".join(non2xx) if non2xx else "none") + ".\n")

    if (OURS in shown) and peers:
        out.append("tower-scale against each peer (requests/s: tower-scale ÷ peer, higher is better; "
                   "p99: tower-scale ÷ peer, lower is better):\n")
        per_round = nrounds > 1
        out.append("| scenario | " + " | ".join(
            f"÷ {p} req/s | ÷ {p} p99" + (f" | rounds ahead of {p}" if per_round else "")
            for p in peers) + " | verdict |")
        out.append("|---" * (2 + (3 if per_round else 2) * len(peers)) + "|")
        for s in scenarios:
            ours = rows.get((OURS, s))
            if ours is None:
                continue
            cells, behind, missing = [s], [], []
            for p in peers:
                r = rows.get((p, s))
                if r is None:
                    cells += ["–", "–"] + (["–"] if per_round else [])
                    missing.append(p)
                    continue
                rr, pr = ours["rps"] / r["rps"], ours["p99"] / r["p99"]
                cells += [f"{rr:.2f}", f"{pr:.2f}"] + ([rounds_ahead(ours, r)] if per_round else [])
                if rr < 1:
                    behind.append(f"req/s vs {p}")
                if pr > 1:
                    behind.append(f"p99 vs {p}")
            verdict = "**behind**: " + ", ".join(behind) if behind else "ahead"
            if missing:
                verdict += " (no figure for " + ", ".join(missing) + ")"
            cells.append(verdict)
            out.append("| " + " | ".join(cells) + " |")
        if per_round:
            out.append("\nrounds ahead: in how many rounds tower-scale had more requests/s, then a "
                       "lower p99, than the peer in the same round. The verdict is the medians'.")
    return "\n".join(out) + "\n"


def redis_table(path, scenario_order):
    """Redis commands and CPU per request, median of the rounds, per scenario and impl."""
    samples = OrderedDict()  # (impl, scenario) -> [(commands, us)]
    impls, scenarios = [], []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 5:
                continue
            _, impl, scenario, commands, us = parts
            try:
                sample = (float(commands), float(us))
            except ValueError:
                continue
            samples.setdefault((impl, scenario), []).append(sample)
            if impl not in impls:
                impls.append(impl)
            if scenario not in scenarios:
                scenarios.append(scenario)
    if not samples:
        return ""
    order = [s for s in scenario_order if s in scenarios] + [s for s in scenarios if s not in scenario_order]
    shown = [i for i in impls if any((i, s) in samples for s in order)]
    out = ["\nWhat a request costs Redis (each implementation against its own redis-server; "
           "commands counted by `INFO commandstats`, those inside Lua scripts included; Redis CPU "
           "from `INFO cpu` used_cpu_user + used_cpu_sys; medians of the rounds, ± half the range "
           "of the rounds' Redis µs relative to the median). Each cell: commands / Redis µs per "
           "request / requests per second one Redis core serves at that cost (10^6 ÷ µs):\n"]
    out.append("| scenario | " + " | ".join(shown) + " |")
    out.append("|---" * (1 + len(shown)) + "|")
    for s in order:
        cells = [s]
        for i in shown:
            xs = samples.get((i, s))
            if not xs:
                cells.append("–")
                continue
            cmds = statistics.median(x[0] for x in xs)
            us = statistics.median(x[1] for x in xs)
            spread = ""
            if len(xs) > 1 and us > 0:
                spread = f" ±{100 * (max(x[1] for x in xs) - min(x[1] for x in xs)) / (2 * us):.0f}%"
            core = f"{1e6 / us:,.0f}" if us > 0 else "∞"
            cells.append(f"{cmds:.3f} / {us:.2f}{spread} / {core}")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def color(impl, index):
    return COLORS.get(impl, EXTRA_COLORS[index % len(EXTRA_COLORS)])


def panel(rows, shown, scenarios, key, base_value, title, x0, y0, w, h):
    """One grouped bar chart of rows[..][key] / base_value per scenario."""
    svg = []
    vals = [rows[(i, s)][key] / base_value for i in shown for s in scenarios if (i, s) in rows]
    vmax = max(vals) * 1.1 if vals else 1.0
    left, bottom, top = 50, 24, 26
    pw, ph = w - left - 10, h - bottom - top
    svg.append(f'<text x="{x0 + w / 2:.0f}" y="{y0 + 16}" text-anchor="middle" font-size="13">{title}</text>')
    for k in range(6):
        v = vmax * k / 5
        y = y0 + top + ph - ph * k / 5
        svg.append(f'<line x1="{x0 + left}" x2="{x0 + w - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        svg.append(f'<text x="{x0 + left - 5}" y="{y + 4:.1f}" text-anchor="end">{v:.2f}</text>')
    # The baseline's own level: 1.0.
    if vmax > 1:
        y1 = y0 + top + ph - ph / vmax
        svg.append(f'<line x1="{x0 + left}" x2="{x0 + w - 10}" y1="{y1:.1f}" y2="{y1:.1f}" '
                   'stroke="#888" stroke-dasharray="4 3"/>')
    group_w = pw / max(1, len(scenarios))
    bar_w = group_w * 0.8 / max(1, len(shown))
    for si, s in enumerate(scenarios):
        gx = x0 + left + si * group_w + group_w * 0.1
        for pi, p in enumerate(shown):
            r = rows.get((p, s))
            if not r:
                continue
            v = r[key] / base_value
            bh = ph * v / vmax
            x = gx + pi * bar_w
            unit = "req/s" if key == "rps" else "ms p99"
            svg.append(f'<rect x="{x:.1f}" y="{y0 + top + ph - bh:.1f}" width="{max(bar_w - 2, 1):.1f}" '
                       f'height="{bh:.1f}" fill="{color(p, pi)}"><title>{p} {s}: '
                       f'{r[key]:,.2f} {unit} ({v:.2f} × bare axum /hello)</title></rect>')
        svg.append(f'<text x="{x0 + left + si * group_w + group_w / 2:.1f}" y="{y0 + top + ph + 16}" '
                   f'text-anchor="middle">{s}</text>')
    return svg


def chart(rows, impls, scenarios):
    shown = [i for i in impls if i != BASE_IMPL]
    scen = [s for s in scenarios if any((i, s) in rows for i in shown)]
    base = rows.get((BASE_IMPL, BASE_SCENARIO))
    base_rps = base["rps"] if base else max(r["rps"] for r in rows.values())
    base_p99 = base["p99"] if base else min(r["p99"] for r in rows.values())
    width, ph = 900, 300
    height = 2 * ph + 60
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    svg += panel(rows, shown, scen, "rps", base_rps,
                 "requests/s ÷ bare axum GET /hello (higher is better; dashed: 1.0)", 0, 0, width, ph)
    svg += panel(rows, shown, scen, "p99", base_p99,
                 "p99 latency ÷ bare axum GET /hello's p99 (lower is better; dashed: 1.0)", 0, ph, width, ph)
    for pi, p in enumerate(shown):
        x = 60 + pi * 170
        svg.append(f'<rect x="{x}" y="{height - 26}" width="12" height="12" fill="{color(p, pi)}"/>')
        svg.append(f'<text x="{x + 16}" y="{height - 16}">{p}</text>')
    svg.append("</svg>")
    return "\n".join(svg) + "\n"


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit("usage: side-by-side-report.py results.txt table.md chart.svg [redis.txt]")
    results, table_path, chart_path = sys.argv[1:4]
    rows, impls, scenarios, nrounds = load(results)
    if not rows:
        sys.exit(f"no results in {results}")
    with open(table_path, "w") as f:
        f.write(table(rows, impls, scenarios, nrounds))
        if len(sys.argv) == 5:
            f.write(redis_table(sys.argv[4], scenarios))
    with open(chart_path, "w") as f:
        f.write(chart(rows, impls, scenarios))


if __name__ == "__main__":
    main()
