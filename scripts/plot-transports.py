#!/usr/bin/env python3
"""Draws docs/bench/transports.svg: for each path, the null-op round trip (p50 bar, p99
tick) and the 16 MiB vadd_u32 round trip, both on log scales. The QEMU guest's rows and
the host-native loop come from docs/bench/one-boot.csv (scripts/bench.sh, one boot), the
Xen rows from docs/bench/transports.csv (measured by hand in one Xen run). Standard
library only.

    scripts/plot-transports.py [ONE_BOOT_CSV TRANSPORTS_CSV SVG]
"""
import csv
import math
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
args = sys.argv[1:] or [root / "docs/bench/one-boot.csv", root / "docs/bench/transports.csv",
                        root / "docs/bench/transports.svg"]
if len(args) != 3:
    sys.exit(__doc__)
one_boot, xen, dst = (Path(a) for a in args)


def data(path):
    with open(path) as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def val(v):
    return float(v) if v else None


NAMES = {"host-native": "host-native loop", "host-native-cold": "host loop, caches flushed",
         "host-native-4-ms-apart": "host loop, runs 4 ms apart",
         "vsock-echo": "vsock echo (floor)", "tls": "TLS (user net)"}
rows = []
for r in data(one_boot):
    setting = "host" if r["kind"].startswith("host") else "QEMU guest"
    rows.append((setting, NAMES.get(r["path"], r["path"]), val(r["null_p50_us"]),
                 val(r["null_p99_us"]), val(r["vadd16_ms"])))
for r in data(xen):
    rows.append((r["setting"], r["transport"], val(r["null_p50_us"]), val(r["null_p99_us"]),
                 val(r["vadd16_ms"])))

W, ROW, TOP, LEFT, PANEL = 1000, 34, 60, 230, 300
H = TOP + ROW * len(rows) + 50


def scale(v, lo, hi):
    return PANEL * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))


out = [
    f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="13">',
    f'<rect width="{W}" height="{H}" fill="white"/>',
    f'<text x="{LEFT}" y="22" font-weight="bold">null op round trip, µs (bar p50, tick p99; log)</text>',
    f'<text x="{LEFT + PANEL + 60}" y="22" font-weight="bold">16 MiB vadd_u32 round trip, ms (log)</text>',
]
lat = (10, 20000)
bulk = (1, 20000)
for panel, (lo, hi) in ((0, lat), (1, bulk)):
    x0 = LEFT + panel * (PANEL + 60)
    v = lo
    while v <= hi:
        x = x0 + scale(v, lo, hi)
        out.append(f'<line x1="{x:.1f}" y1="{TOP - 8}" x2="{x:.1f}" y2="{H - 40}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{H - 24}" text-anchor="middle" fill="#555">{v:g}</text>')
        v *= 10
for i, (setting, transport, p50, p99, vadd) in enumerate(rows):
    y = TOP + i * ROW
    colour = {"QEMU guest": "#4a7ab5", "host": "#5a9a5a"}.get(setting, "#b5744a")
    out.append(f'<text x="{LEFT - 10}" y="{y + 16}" text-anchor="end">{setting}: {transport}</text>')
    if p50:
        w = scale(p50, *lat)
        out.append(f'<rect x="{LEFT}" y="{y + 4}" width="{w:.1f}" height="18" fill="{colour}"/>')
        t = LEFT + scale(p99, *lat)
        out.append(f'<line x1="{t:.1f}" y1="{y + 2}" x2="{t:.1f}" y2="{y + 24}" stroke="black" stroke-width="2"/>')
        out.append(f'<text x="{LEFT + w + 4:.1f}" y="{y + 17}" fill="white" font-size="11">{p50:g}</text>' if w > 60 else "")
    if vadd:
        x0 = LEFT + PANEL + 60
        w = scale(vadd, *bulk)
        out.append(f'<rect x="{x0}" y="{y + 4}" width="{w:.1f}" height="18" fill="{colour}"/>')
        out.append(f'<text x="{x0 + w + 4:.1f}" y="{y + 17}">{vadd:g}</text>')
out.append(f'<text x="10" y="{H - 6}" fill="#555" font-size="11">green: the host, no VM, and blue: one QEMU TCG guest boot, in one run of scripts/bench.sh (one-boot.csv); brown: one Xen 4.17 run, PV domUs (transports.csv)</text>')
out.append("</svg>")
dst.write_text("\n".join(x for x in out if x) + "\n")
print(dst)
