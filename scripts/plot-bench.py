#!/usr/bin/env python3
"""Draws the benchmark plots of docs/benchmarks.md from the CSV files that
`cargo bench -p vfpgad --bench figures` writes (scripts/bench-plots.sh runs both):

    latency.csv     -> latency.svg     null-op round trip by percentile, per transport
    throughput.csv  -> throughput.svg  vadd_u32 throughput by vector size, per transport
    remote.csv      -> remote.svg      vadd_u32 round trip by vector size, local and remote

Usage: scripts/plot-bench.py [--csv DIR] [--out DIR]   (both default to docs/bench)

Each series of a plot is one group of CSV rows (its first column), drawn as an SVG
group <g class="series" data-series="NAME"> with one point per row. Standard library
only. A CSV that is not what the bench writes is refused with the file, the line and
what is wrong (exit status 2).
"""
import argparse
import csv
import html
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLOURS = ["#4a7ab5", "#b5744a", "#5a9e4b", "#9b59b6", "#c0392b", "#7f8c8d"]
W, H = 760, 420
LEFT, RIGHT, TOP, BOTTOM = 80, 230, 50, 60


class BadCsv(Exception):
    pass


def read(path, columns):
    """Rows of PATH as (group, [floats]) after its header line COLUMNS; '#' lines are
    comments."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BadCsv(f"{path}: {e}")
    rows = []
    header = None
    try:
        records = list(csv.reader(text.splitlines()))
    except csv.Error as e:
        raise BadCsv(f"{path}: {e}")
    for n, r in enumerate(records, 1):
        if not r or r[0].startswith("#"):
            continue
        if header is None:
            header = r
            if header != columns:
                raise BadCsv(f"{path}:{n}: header {','.join(header)}, expected {','.join(columns)}")
            continue
        if len(r) != len(columns):
            raise BadCsv(f"{path}:{n}: {len(r)} fields, expected {len(columns)} ({','.join(columns)})")
        if not r[0].strip():
            raise BadCsv(f"{path}:{n}: empty {columns[0]}")
        try:
            values = [float(v) for v in r[1:]]
        except ValueError as e:
            raise BadCsv(f"{path}:{n}: {e}")
        # Below 1e-12 no figure of ours lands (µs, ms, GiB/s, bytes); so small a value
        # would only break the axes' arithmetic.
        if not all(math.isfinite(v) and v >= 1e-12 for v in values):
            raise BadCsv(f"{path}:{n}: every value must be a positive number (at least 1e-12)")
        rows.append((r[0], values))
    if header is None or not rows:
        raise BadCsv(f"{path}: no data (expected the header {','.join(columns)} and rows)")
    return rows


def groups(rows):
    """Rows grouped by their first column, in order of first appearance."""
    out = {}
    for g, values in rows:
        out.setdefault(g, []).append(values)
    return out


class Axis:
    def __init__(self, lo, hi, log, length, flip=False):
        self.log = log
        self.lo, self.hi = (math.log10(lo), math.log10(hi)) if log else (lo, hi)
        self.length, self.flip = length, flip

    def __call__(self, v):
        v = math.log10(v) if self.log else v
        f = (v - self.lo) / (self.hi - self.lo) if self.hi > self.lo else 0.5
        return self.length * (1 - f) if self.flip else self.length * f


def decades(lo, hi):
    v = 10 ** math.floor(math.log10(lo))
    while v <= hi * 1.0001:
        if v >= lo * 0.9999:
            yield v
        v *= 10


def fmt(v):
    return f"{v:g}"


def chart(title, xlabel, ylabel, series, x, y, xticks, yticks, note):
    """An SVG line chart: SERIES maps a name to [(xv, yv)]; X and Y are Axis objects
    over the plot area; the ticks are (value, label) pairs."""
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    e = html.escape
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{LEFT}" y="24" font-size="14" font-weight="bold">{e(title)}</text>',
        f'<g class="grid" stroke="#ddd">',
    ]
    for v, label in xticks:
        px = LEFT + x(v)
        out.append(f'<line x1="{px:.1f}" y1="{TOP}" x2="{px:.1f}" y2="{TOP + ph}"/>')
    for v, label in yticks:
        py = TOP + y(v)
        out.append(f'<line x1="{LEFT}" y1="{py:.1f}" x2="{LEFT + pw}" y2="{py:.1f}"/>')
    out.append("</g>")
    out.append('<g class="ticks" fill="#555">')
    for v, label in xticks:
        out.append(f'<text x="{LEFT + x(v):.1f}" y="{TOP + ph + 16}" text-anchor="middle">{e(label)}</text>')
    for v, label in yticks:
        out.append(f'<text x="{LEFT - 6}" y="{TOP + y(v) + 4:.1f}" text-anchor="end">{e(label)}</text>')
    out.append("</g>")
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
    out.append(f'<text x="{LEFT + pw / 2:.1f}" y="{TOP + ph + 36}" text-anchor="middle">{e(xlabel)}</text>')
    out.append(
        f'<text transform="translate(18 {TOP + ph / 2:.1f}) rotate(-90)" text-anchor="middle">{e(ylabel)}</text>'
    )
    for i, (name, points) in enumerate(series.items()):
        c = COLOURS[i % len(COLOURS)]
        xy = [(LEFT + x(a), TOP + y(b)) for a, b in points]
        out.append(f'<g class="series" data-series="{e(name)}" stroke="{c}" fill="{c}">')
        out.append(
            '<polyline fill="none" stroke-width="2" points="'
            + " ".join(f"{px:.1f},{py:.1f}" for px, py in xy)
            + '"/>'
        )
        for (px, py), (a, b) in zip(xy, points):
            out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3"><title>{e(name)}: {fmt(a)}, {fmt(b)}</title></circle>')
        ly = TOP + 10 + 20 * i
        out.append(f'<line x1="{W - RIGHT + 16}" y1="{ly}" x2="{W - RIGHT + 40}" y2="{ly}" stroke-width="3"/>')
        out.append(f'<text x="{W - RIGHT + 46}" y="{ly + 4}" stroke="none" fill="black">{e(name)}</text>')
        out.append("</g>")
    out.append(f'<text x="10" y="{H - 8}" fill="#555" font-size="11">{e(note)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def size_label(b):
    return f"{b / (1 << 20):g} MiB" if b >= 1 << 20 else f"{b / 1024:g} KiB"


def nines(p):
    """A percentile's place on a 'number of nines' scale: 90 -> 1, 99 -> 2, ..."""
    return -math.log10(1 - p / 100)


def latency(src):
    rows = read(src, ["transport", "percentile", "us"])
    for g, (p, us) in rows:
        if p >= 100:
            raise BadCsv(f"{src}: percentile {p:g} of {g}: must be below 100")
    series = {g: [(nines(p), us) for p, us in v] for g, v in groups(rows).items()}
    xs = [a for pts in series.values() for a, _ in pts]
    ys = [b for pts in series.values() for _, b in pts]
    x = Axis(min(xs), max(xs), False, W - LEFT - RIGHT)
    ylo, yhi = 10 ** math.floor(math.log10(min(ys))), 10 ** math.ceil(math.log10(max(ys)))
    y = Axis(ylo, yhi, True, H - TOP - BOTTOM, flip=True)
    xticks = [(nines(p), f"p{p:g}") for p in (50, 90, 99, 99.9, 99.99) if min(xs) <= nines(p) <= max(xs)]
    yticks = [(v, fmt(v)) for v in decades(ylo, yhi)]
    return chart(
        "Null-op round trip by percentile",
        "percentile (each step right: ten times rarer)",
        "round trip, µs (log)",
        series, x, y, xticks, yticks,
        f"{len(series)} transports; data: docs/bench/{src.name} (cargo bench -p vfpgad --bench figures)",
    )


def by_size(src, key, title, ylabel, use_ms, ylog):
    rows = read(src, [key, "vector_bytes", "ms", "gib_per_s"])
    series = {g: [(b, ms if use_ms else gib) for b, ms, gib in v] for g, v in groups(rows).items()}
    xs = [a for pts in series.values() for a, _ in pts]
    ys = [b for pts in series.values() for _, b in pts]
    x = Axis(min(xs), max(xs), True, W - LEFT - RIGHT)
    if ylog:
        ylo, yhi = 10 ** math.floor(math.log10(min(ys))), 10 ** math.ceil(math.log10(max(ys)))
        yticks = [(v, fmt(v)) for v in decades(ylo, yhi)]
    else:
        step = 10 ** math.floor(math.log10(max(ys)))
        step = step / 2 if max(ys) / step < 3 else step
        ylo, yhi = 0, math.ceil(max(ys) / step) * step
        yticks = [(i * step, fmt(i * step)) for i in range(int(round(yhi / step)) + 1)]
    y = Axis(ylo, yhi, ylog, H - TOP - BOTTOM, flip=True)
    xticks = [(b, size_label(b)) for b in sorted(set(xs))]
    return chart(
        title, "vector size (each of the 2 inputs and the output; log)", ylabel,
        series, x, y, xticks, yticks,
        f"data: docs/bench/{src.name} (cargo bench -p vfpgad --bench figures)",
    )


PLOTS = {
    "latency": latency,
    "throughput": lambda src: by_size(
        src, "transport", "vadd_u32 throughput by vector size",
        "GiB/s moved (2 in + 1 out)", use_ms=False, ylog=False,
    ),
    "remote": lambda src: by_size(
        src, "path", "vadd_u32 round trip: local engine and remote board",
        "round trip, ms (log)", use_ms=True, ylog=True,
    ),
}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", type=Path, default=ROOT / "docs/bench", help="folder of the CSV files")
    ap.add_argument("--out", type=Path, default=ROOT / "docs/bench", help="folder for the SVG files")
    a = ap.parse_args(argv)
    try:
        made = [(a.out / f"{name}.svg", draw(a.csv / f"{name}.csv")) for name, draw in PLOTS.items()]
    except BadCsv as e:
        print(f"plot-bench.py: {e}", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    for path, svg in made:
        path.write_text(svg, encoding="utf-8")
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
