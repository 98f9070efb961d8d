#!/usr/bin/env python3
"""Turns bench-compare.sh's raw lines into a markdown table of ratios and an SVG bar chart.

usage: bench-report.py results.txt table.md chart.svg
Each input line: "<impl> <scenario> <requests_per_s> <p99_ms> <non2xx>".
"""
import sys
from collections import OrderedDict

BASE_IMPL, BASE_SCENARIO, OURS = "bare-axum", "hello", "tower-scale"
COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"]


def load(path):
    rows = OrderedDict()
    impls, scenarios = [], []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 5:
                continue
            impl, scenario, rps, p99, non2xx = parts
            rows[(impl, scenario)] = (float(rps), float(p99), int(non2xx))
            if impl not in impls:
                impls.append(impl)
            if scenario not in scenarios:
                scenarios.append(scenario)
    return rows, impls, scenarios


def table(rows, impls, scenarios):
    base = rows.get((BASE_IMPL, BASE_SCENARIO))
    peers = [i for i in impls if i != BASE_IMPL]
    out = []
    if base:
        out.append(
            f"Baseline: bare axum `GET /hello` = {base[0]:,.0f} req/s, p99 {base[1]:.2f} ms "
            "(ratios below are to it, and to tower-scale in the same run).\n"
        )
    out.append("| scenario | " + " | ".join(
        f"{i} req/s (× bare) | {i} p99 ms | {i} non-2xx" for i in peers) + " | tower-scale ÷ best peer |")
    out.append("|---" * (1 + 3 * len(peers) + 1) + "|")
    for s in scenarios:
        if s == BASE_SCENARIO and not any((i, s) in rows for i in peers):
            continue
        cells = [s]
        for i in peers:
            r = rows.get((i, s))
            if r is None:
                cells += ["–", "–", "–"]
                continue
            ratio = f" ({r[0] / base[0]:.2f})" if base else ""
            cells += [f"{r[0]:,.0f}{ratio}", f"{r[1]:.2f}", str(r[2])]
        ours = rows.get((OURS, s))
        others = [rows[(i, s)][0] for i in peers if i != OURS and (i, s) in rows]
        cells.append(f"{ours[0] / max(others):.2f}" if ours and others else "–")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def chart(rows, impls, scenarios):
    peers = [i for i in impls if i != BASE_IMPL]
    base = rows.get((BASE_IMPL, BASE_SCENARIO))
    norm = base[0] if base else max(r[0] for r in rows.values())
    width, height, left, bottom, top = 900, 420, 60, 60, 40
    plot_w, plot_h = width - left - 20, height - bottom - top
    group_w = plot_w / max(1, len(scenarios))
    bar_w = group_w * 0.8 / max(1, len(peers))
    vmax = max(r[0] / norm for r in rows.values()) * 1.1
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           'font-family="sans-serif" font-size="12">',
           f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">'
           'requests/s relative to bare axum GET /hello (higher is better)</text>']
    for k in range(0, 6):
        v = vmax * k / 5
        y = top + plot_h - plot_h * k / 5
        svg.append(f'<line x1="{left}" x2="{width - 20}" y1="{y}" y2="{y}" stroke="#ddd"/>')
        svg.append(f'<text x="{left - 5}" y="{y + 4}" text-anchor="end">{v:.2f}</text>')
    for si, s in enumerate(scenarios):
        gx = left + si * group_w + group_w * 0.1
        for pi, p in enumerate(peers):
            r = rows.get((p, s))
            if not r:
                continue
            h = plot_h * (r[0] / norm) / vmax
            x = gx + pi * bar_w
            svg.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w - 2:.1f}" '
                       f'height="{h:.1f}" fill="{COLORS[pi % len(COLORS)]}"><title>{p} {s}: '
                       f'{r[0]:,.0f} req/s</title></rect>')
        svg.append(f'<text x="{left + si * group_w + group_w / 2:.1f}" y="{top + plot_h + 18}" '
                   f'text-anchor="middle">{s}</text>')
    for pi, p in enumerate(peers):
        x = left + pi * 170
        svg.append(f'<rect x="{x}" y="{height - 22}" width="12" height="12" '
                   f'fill="{COLORS[pi % len(COLORS)]}"/>')
        svg.append(f'<text x="{x + 16}" y="{height - 12}">{p}</text>')
    svg.append("</svg>")
    return "\n".join(svg) + "\n"


def main():
    results, table_path, chart_path = sys.argv[1:4]
    rows, impls, scenarios = load(results)
    if not rows:
        sys.exit(f"no results in {results}")
    with open(table_path, "w") as f:
        f.write(table(rows, impls, scenarios))
    with open(chart_path, "w") as f:
        f.write(chart(rows, impls, scenarios))


if __name__ == "__main__":
    main()
