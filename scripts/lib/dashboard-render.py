#!/usr/bin/env python3
"""Draws a Grafana dashboard's panels from a running Prometheus into one PNG, with matplotlib:
every panel's queries (`targets[].expr`, the dashboard's variables substituted) evaluated with
`/api/v1/query_range` over [START, END], laid out by `gridPos`, with the panels' titles, legend
formats and units. Used by scripts/dashboard-render.sh:

    dashboard-render.py --prometheus http://127.0.0.1:9090 --start 1700000000 --end 1700000150 \\
        [--step 2] [--mark START:END:LABEL]... [--check] docs/grafana/tower-scale.json out.png

A panel whose queries all return no data is drawn as "No data" and named on stderr, as is each
query without data; with --check the exit status is then 1. Bad input (an unknown unit or panel
type, a variable without a value, a query Prometheus refuses) exits 2 with the reason.
"""
import argparse
import json
import math
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone

# Grafana's dark theme, closely enough that the picture reads like the dashboard.
BACKGROUND = "#111217"
PANEL = "#181b1f"
GRID = "#2c3235"
TEXT = "#ccccdc"
MUTED = "#8e8e8e"
MARK = "#f2495c"
PALETTE = [
    "#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9",
    "#705da0", "#37872d", "#fade2a", "#447ebc", "#c15c17", "#890f02", "#0a437c",
    "#6d1f62", "#584477", "#b7dbab", "#f4d598", "#70dbed", "#f9ba8f",
]
GRID_COLUMNS = 24  # Grafana's grid: 24 columns; a row unit is 30 px
ROW_INCHES = 0.34
COLUMN_INCHES = 0.8
HEADER_INCHES = 0.5
GAP_INCHES = 0.04  # between panels
TITLE_INCHES = 0.34  # a panel's title, above its plot
PLOT_LEFT_INCHES = 0.75  # the y axis's tick labels
X_TICKS_INCHES = 0.25  # the time axis's tick labels
LEGEND_ROW_INCHES = 0.15
LEGEND_CHAR_INCHES = 0.05


def fail(message):
    print(f"dashboard-render.py: {message}", file=sys.stderr)
    sys.exit(2)


# --- units: Grafana unit id -> (value -> tick text) ---------------------------------------------

def _si(value, suffix=""):
    """A number with an SI prefix (k, M, G) and up to 3 significant digits."""
    if value == 0 or not math.isfinite(value):
        return f"0{suffix}" if value == 0 else str(value)
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{prefix}{suffix}"
    return f"{value:.3g}{suffix}"


def _seconds(value):
    a = abs(value)
    if a == 0:
        return "0 s"
    if a < 1e-6:
        return f"{value * 1e9:.3g} ns"
    if a < 1e-3:
        return f"{value * 1e6:.3g} µs"
    if a < 1:
        return f"{value * 1e3:.3g} ms"
    if a < 60:
        return f"{value:.3g} s"
    return f"{value / 60:.3g} min"


def _bytes(value):
    a = abs(value)
    for factor, name in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if a >= factor:
            return f"{value / factor:.3g} {name}"
    return f"{value:.3g} B"


UNITS = {
    "short": lambda v: _si(v),
    "none": lambda v: f"{v:.3g}",
    "reqps": lambda v: _si(v, " req/s"),
    "ops": lambda v: _si(v, " ops/s"),
    "percentunit": lambda v: f"{v * 100:.3g}%",
    "percent": lambda v: f"{v:.3g}%",
    "s": _seconds,
    "ms": lambda v: _seconds(v / 1e3),
    "bytes": _bytes,
}


# --- the dashboard ------------------------------------------------------------------------------

def variables(dashboard, step, start, end, scrape):
    """The dashboard's variables and Grafana's built-in ones used in queries, by name."""
    values = {
        "__interval": f"{step}s",
        "__interval_ms": str(step * 1000),
        # Grafana: max($__interval + scrape interval, 4 × scrape interval).
        "__rate_interval": f"{max(step + scrape, 4 * scrape)}s",
        "__range": f"{end - start}s",
        "__range_s": str(end - start),
    }
    for var in dashboard.get("templating", {}).get("list", []):
        name, kind = var["name"], var.get("type")
        if kind == "datasource":
            values[name] = "prometheus"  # only datasource fields use it; queries go to --prometheus
            continue
        current = var.get("current", {}).get("value")
        if current is None:
            options = var.get("options") or []
            current = options[0].get("value") if options else var.get("query")
        if isinstance(current, list):  # multi-value: Prometheus regex alternation
            current = "|".join(".*" if v == "$__all" else re.escape(v) for v in current)
        elif current == "$__all":
            current = var.get("allValue") or ".*"
        if current is None:
            fail(f"variable ${name} ({kind}) has no value to substitute")
        values[name] = str(current)
    return values


def substitute(expr, values, where):
    def one(match):
        name = match.group(1) or match.group(2) or match.group(3)
        if name.isdigit():  # label_replace's $1: not a variable
            return match.group(0)
        if name not in values:
            fail(f"{where}: variable ${name} is not defined by the dashboard")
        return values[name]

    # ${name} (optionally ${name:format}), [[name]], $name (longest names first by the regex)
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", one, expr)


def legend(fmt, metric):
    if fmt and fmt != "__auto":
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt).strip()
    labels = ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{metric.get('__name__', '')}{{{labels}}}" if labels or "__name__" in metric else "value"


def query_range(prometheus, expr, start, end, step):
    url = prometheus.rstrip("/") + "/api/v1/query_range?" + urllib.parse.urlencode(
        {"query": expr, "start": start, "end": end, "step": step})
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            body = json.load(response)
    except urllib.error.HTTPError as e:
        body = json.load(e)
        fail(f"Prometheus refused {expr!r}: {body.get('error', e)}")
    except (urllib.error.URLError, OSError) as e:
        fail(f"Prometheus at {prometheus} does not answer: {e}")
    if body.get("status") != "success":
        fail(f"Prometheus refused {expr!r}: {body.get('error')}")
    if body["data"]["resultType"] != "matrix":
        fail(f"{expr!r} gave a {body['data']['resultType']}, not a range of samples")
    return body["data"]["result"]


def panels_of(dashboard):
    """Every panel to draw, the panels of collapsed rows included; rows themselves are not."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


# --- drawing ------------------------------------------------------------------------------------

def legend_layout(labels, width):
    """Columns and rows of a legend of `labels` under a plot `width` inches wide."""
    if not labels:
        return 1, 0
    entry = max(len(label) for label in labels) * LEGEND_CHAR_INCHES + 0.4
    columns = max(1, min(len(labels), int(width // entry)))
    return columns, -(-len(labels) // columns)


def draw(args, dashboard, results, marks):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p, _ in results)
    width, height = GRID_COLUMNS * COLUMN_INCHES, HEADER_INCHES + rows * ROW_INCHES
    fig = plt.figure(figsize=(width, height), facecolor=BACKGROUND)

    def rect(left, top, w, h):
        """Figure coordinates of a box given in inches from the top-left corner."""
        return [left / width, 1 - (top + h) / height, w / width, h / height]

    utc = timezone.utc
    span = (f"{datetime.fromtimestamp(args.start, utc):%Y-%m-%d %H:%M:%S} – "
            f"{datetime.fromtimestamp(args.end, utc):%H:%M:%S} UTC, step {args.step} s")
    fig.text(0.1 / width, 1 - HEADER_INCHES / 2 / height, dashboard.get("title", "dashboard"),
             color=TEXT, fontsize=15, fontweight="bold", va="center")
    fig.text(1 - 0.1 / width, 1 - HEADER_INCHES / 2 / height, span, color=MUTED, fontsize=10,
             va="center", ha="right")
    if marks:
        shaded = "; ".join(f"{label} {datetime.fromtimestamp(a, utc):%H:%M:%S}–"
                           f"{datetime.fromtimestamp(b, utc):%H:%M:%S}" for a, b, label in marks)
        fig.text(0.5, 1 - HEADER_INCHES / 2 / height, f"shaded: {shaded}", color=MARK,
                 fontsize=10, va="center", ha="center")

    for panel, series in results:
        pos = panel["gridPos"]
        left = pos["x"] * COLUMN_INCHES + GAP_INCHES
        top = HEADER_INCHES + pos["y"] * ROW_INCHES + GAP_INCHES
        w = pos["w"] * COLUMN_INCHES - 2 * GAP_INCHES
        h = pos["h"] * ROW_INCHES - 2 * GAP_INCHES
        box = rect(left, top, w, h)
        fig.patches.append(Rectangle((box[0], box[1]), box[2], box[3], transform=fig.transFigure,
                                     facecolor=PANEL, edgecolor=GRID, linewidth=0.8, zorder=-1))
        fig.text((left + 0.12) / width, 1 - (top + TITLE_INCHES / 2) / height,
                 panel.get("title", ""), color=TEXT, fontsize=10, va="center")
        labels = [name for name, _, _ in series]
        plot_w = w - PLOT_LEFT_INCHES - 0.15
        columns, legend_rows = legend_layout(labels, plot_w)
        legend_h = legend_rows * LEGEND_ROW_INCHES + (0.08 if legend_rows else 0)
        plot_h = h - TITLE_INCHES - X_TICKS_INCHES - legend_h
        if plot_h < 0.5:
            fail(f"panel {panel.get('title')!r}: {len(labels)} series leave no room to draw in "
                 f"a panel {pos['h']} rows high")
        ax = fig.add_axes(rect(left + PLOT_LEFT_INCHES, top + TITLE_INCHES, plot_w, plot_h))
        ax.set_facecolor(PANEL)
        for side in ax.spines.values():
            side.set_visible(False)
        ax.tick_params(colors=MUTED, labelsize=7, length=0)
        ax.grid(True, color=GRID, linewidth=0.6)
        ax.set_xlim(datetime.fromtimestamp(args.start, utc), datetime.fromtimestamp(args.end, utc))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=utc))
        ax.xaxis.set_major_locator(MaxNLocator(7))
        for m_start, m_end, _label in marks:
            ax.axvspan(datetime.fromtimestamp(m_start, utc), datetime.fromtimestamp(m_end, utc),
                       color=MARK, alpha=0.15, linewidth=0)
        if not series:
            ax.set_yticks([])
            ax.text(0.5, 0.5, "No data", color=MUTED, fontsize=14, ha="center", va="center",
                    transform=ax.transAxes)
            continue
        unit = UNITS[panel_unit(panel)]
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos, unit=unit: unit(v)))
        ax.yaxis.set_major_locator(MaxNLocator(5))
        ymin, lines = 0.0, []
        for i, (name, times, values) in enumerate(series):
            color = PALETTE[i % len(PALETTE)]
            lines += ax.plot([datetime.fromtimestamp(t, utc) for t in times], values,
                             color=color, linewidth=1.1, label=name)
            finite = [v for v in values if math.isfinite(v)]
            if finite:
                ymin = min(ymin, min(finite))
        ax.set_ylim(bottom=ymin)
        key = fig.add_axes(rect(left + PLOT_LEFT_INCHES, top + h - legend_h, plot_w, legend_h))
        key.axis("off")
        key.legend(lines, labels, loc="upper left", ncol=columns, fontsize=6.5, frameon=False,
                   labelcolor=TEXT, handlelength=1.2, columnspacing=1.0, borderaxespad=0,
                   borderpad=0, labelspacing=0.25)
    fig.savefig(args.output, dpi=args.dpi, facecolor=BACKGROUND)


def panel_unit(panel):
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit") or "short"
    if unit not in UNITS:
        fail(f"panel {panel.get('title')!r}: unit {unit!r} is not one the renderer knows "
             f"({', '.join(sorted(UNITS))}): add it to UNITS in {sys.argv[0]}")
    return unit


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dashboard")
    parser.add_argument("output")
    parser.add_argument("--prometheus", required=True, help="Prometheus base URL")
    parser.add_argument("--start", type=int, required=True, help="Unix seconds")
    parser.add_argument("--end", type=int, required=True, help="Unix seconds")
    parser.add_argument("--step", type=int, default=2, help="seconds between points (2)")
    parser.add_argument("--scrape", type=int, default=1,
                        help="Prometheus's scrape interval in seconds, for $__rate_interval (1)")
    parser.add_argument("--mark", action="append", default=[],
                        help="START:END:LABEL, a span shaded on every panel (Unix seconds)")
    parser.add_argument("--dpi", type=int, default=80)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when a panel has no data")
    args = parser.parse_args()
    if args.end <= args.start or args.step <= 0:
        fail(f"need --start < --end and --step > 0 (got {args.start}, {args.end}, {args.step})")
    marks = []
    for mark in args.mark:
        try:
            m_start, m_end, label = mark.split(":", 2)
            marks.append((int(m_start), int(m_end), label))
        except ValueError:
            fail(f"--mark {mark!r}: expected START:END:LABEL")
    try:
        with open(args.dashboard) as f:
            dashboard = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read the dashboard {args.dashboard}: {e}")

    values = variables(dashboard, args.step, args.start, args.end, args.scrape)
    results, empty_panels, report = [], [], []
    for panel in panels_of(dashboard):
        title = panel.get("title", f"panel {panel.get('id')}")
        if panel.get("type") not in ("timeseries", "graph"):
            fail(f"panel {title!r}: type {panel.get('type')!r} is not drawn (timeseries only)")
        if "gridPos" not in panel:
            fail(f"panel {title!r} has no gridPos")
        panel_unit(panel)
        series = []
        for target in panel.get("targets", []):
            if target.get("hide"):
                continue
            expr = substitute(target["expr"], values, f"panel {title!r}")
            result = query_range(args.prometheus, expr, args.start, args.end, args.step)
            drawn = 0
            for s in result:
                times = [float(t) for t, _ in s["values"]]
                points = [float(v) for _, v in s["values"]]  # "NaN", "+Inf" parse too
                if not any(math.isfinite(v) for v in points):
                    continue  # a series of NaN only (e.g. a quantile of no requests) is no data
                series.append((legend(target.get("legendFormat"), s["metric"]), times, points))
                drawn += 1
            report.append((title, target.get("refId", "?"), expr, drawn))
        if not series:
            empty_panels.append(title)
        results.append((panel, series))
    if not results:
        fail(f"no panels in {args.dashboard}")
    draw(args, dashboard, results, marks)

    for title, ref, expr, drawn in report:
        state = f"{drawn} series" if drawn else "NO DATA"
        print(f"{state:>10}  {title} [{ref}]: {expr}", file=sys.stderr)
    for title in empty_panels:
        print(f"dashboard-render.py: panel {title!r} has no data", file=sys.stderr)
    print(f"dashboard-render.py: {len(results)} panels drawn into {args.output}"
          f" ({len(empty_panels)} without data)", file=sys.stderr)
    if args.check and empty_panels:
        sys.exit(1)


if __name__ == "__main__":
    main()
