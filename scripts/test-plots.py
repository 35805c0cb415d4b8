#!/usr/bin/env python3
"""Tests of the benchmark plots (part of scripts/test-all.sh; standard library only):
scripts/plot-bench.py redraws docs/bench/*.svg from the checked-in CSV files exactly as
checked in; each SVG is well-formed XML with one series per group of CSV rows and one
point per row; CSV files that are not what the bench writes are refused with the file,
the line and the reason, never a traceback; transports.svg is what its CSV files draw,
and scripts/bench-table.py (scripts/bench.sh's tables) reads the guest's lines and
rewrites only its section.

    scripts/test-plots.py [-v]
"""
import csv
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "docs/bench"
PLOT = ROOT / "scripts/plot-bench.py"
SVG = "{http://www.w3.org/2000/svg}"
NAMES = ("latency", "throughput", "remote")


def plot(csv_dir, out_dir):
    return subprocess.run(
        [sys.executable, str(PLOT), "--csv", str(csv_dir), "--out", str(out_dir)],
        capture_output=True, text=True, timeout=60,
    )


def csv_groups(path):
    """Rows per group (first column) of a bench CSV, in order."""
    groups = {}
    lines = [l for l in path.read_text().splitlines() if l and not l.startswith("#")]
    for r in list(csv.reader(lines))[1:]:
        groups[r[0]] = groups.get(r[0], 0) + 1
    return groups


class Plots(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)

    def tearDown(self):
        self.tmp.cleanup()

    def test_checked_in_plots_are_the_checked_in_data(self):
        r = plot(BENCH, self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        for name in NAMES:
            drawn = (self.dir / f"{name}.svg").read_text()
            kept = (BENCH / f"{name}.svg").read_text()
            self.assertEqual(drawn, kept, f"docs/bench/{name}.svg is stale: run scripts/bench-plots.sh --plot-only")

    def test_one_series_per_row_group_and_one_point_per_row(self):
        r = plot(BENCH, self.dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        for name in NAMES:
            root = ET.parse(self.dir / f"{name}.svg").getroot()
            self.assertEqual(root.tag, SVG + "svg")
            series = [g for g in root.iter(SVG + "g") if g.get("class") == "series"]
            want = csv_groups(BENCH / f"{name}.csv")
            self.assertGreaterEqual(len(want), 2, name)
            self.assertEqual([g.get("data-series") for g in series], list(want), name)
            for g in series:
                points = g.findall(SVG + "circle")
                self.assertEqual(len(points), want[g.get("data-series")], name)
                self.assertEqual(len(g.findall(SVG + "polyline")), 1, name)

    def test_the_transports_plot_is_well_formed_and_the_checked_in_data(self):
        root = ET.parse(BENCH / "transports.svg").getroot()
        self.assertEqual(root.tag, SVG + "svg")
        out = self.dir / "transports.svg"
        r = subprocess.run(
            [sys.executable, str(ROOT / "scripts/plot-transports.py"), str(BENCH / "one-boot.csv"),
             str(BENCH / "transports.csv"), str(out)],
            capture_output=True, text=True, timeout=60,
        )
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(out.read_text(), (BENCH / "transports.svg").read_text(),
                         "docs/bench/transports.svg is stale: run scripts/bench.sh --render-only")

    def table(self, *args):
        return subprocess.run([sys.executable, str(ROOT / "scripts/bench-table.py"), *map(str, args)],
                              capture_output=True, text=True, timeout=60)

    def test_the_one_boot_table_reads_added_fields_and_refuses_bad_lines(self):
        (self.dir / "host").write_text("host vadd_u32 16.0 MiB vectors: 41 runs, median 2.000 ms, min 1.9 ms\n")
        (self.dir / "variants").write_text("virtio\nvirtio-huge --huge\n")
        lines = [f"VFPGA-BENCH {p} null op: 2000 round trips, mean 110.0 us, p50 100.0 us, p99 300.0 us (x)\n"
                 f"VFPGA-BENCH {p} vadd_u32 16.0 MiB vectors: 5 runs x 1 threads, 4.00 ms per run, engine 2.00 ms{seg}, "
                 "1.0 MiB/s (3 vectors touched)\n"
                 for p, seg in (("virtio", ""), ("virtio-huge", ", segments 24"), ("vsock", ""), ("tls", ""))]
        lines.append("VFPGA-BENCH vsock-echo echo 64 B: 2000 round trips, mean 210.0 us, p50 200.0 us, p99 400.0 us\n")
        (self.dir / "guest").write_text("boot noise\n" + "".join(lines))
        made = self.dir / "one-boot.csv"
        args = ["csv", "--host", self.dir / "host", "--guest", self.dir / "guest", "--variants", self.dir / "variants"]
        r = self.table(*args, "--meta", "date=today", made)
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = list(csv.DictReader(l for l in made.read_text().splitlines() if not l.startswith("#")))
        self.assertEqual([r["path"] for r in rows], ["host-native", "virtio", "virtio-huge", "vsock", "tls", "vsock-echo"])
        self.assertEqual((rows[2]["flags"], rows[2]["segments"], rows[1]["segments"]), ("--huge", "24", ""))
        md = self.dir / "md"
        md.write_text("intro\n<!-- generated by scripts/bench.sh: begin -->\nold\n<!-- generated by scripts/bench.sh: end -->\nrest\n")
        self.assertEqual(self.table("render", "--check", made, md).returncode, 1)
        self.assertEqual(self.table("render", made, md).returncode, 0)
        self.assertEqual(self.table("render", "--check", made, md).returncode, 0)
        text = md.read_text()
        self.assertTrue(text.startswith("intro\n<!--") and text.endswith("end -->\nrest\n"), text)
        self.assertIn("| 2.00× | ≤ 2× | met |", text)  # 4 ms ÷ 2 ms
        self.assertIn("| 0.50× | ≤ 0.25× | not met |", text)  # 100 µs ÷ 200 µs
        (self.dir / "guest").write_text("".join(lines).split("\n", 1)[1])  # virtio's null op line gone
        r = self.table(*args, made)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("virtio: want one null-op and one vadd_u32 line, got 0 and 1", r.stderr)
        made.write_text("path,kind\nvirtio,virtio\n")
        r = self.table("render", made, md)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertNotIn("Traceback", r.stderr)
        # The host loop with its caches flushed: a second host row, set against the warm one.
        (self.dir / "guest").write_text("".join(lines))
        warm = "host vadd_u32 16.0 MiB vectors: 41 runs, median 2.000 ms, min 1.9 ms\n"
        (self.dir / "host").write_text(warm + "host vadd_u32 16.0 MiB vectors, caches flushed: 41 runs, median 3.000 ms\n")
        r = self.table(*args, made)
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = list(csv.DictReader(l for l in made.read_text().splitlines() if not l.startswith("#")))
        self.assertEqual([(r["path"], r["kind"], r["vadd16_ms"]) for r in rows[:2]],
                         [("host-native", "host", "2.000"), ("host-native-cold", "host-cold", "3.000")])
        self.assertEqual(self.table("render", made, md).returncode, 0)
        self.assertIn("caches before each run (`--cold`) | — | — | — | — | 3.00 ms | — | — | 1.50× |", md.read_text())
        (self.dir / "host").write_text(warm + "host vadd_u32 8.0 MiB vectors, caches flushed: 41 runs, median 3.000 ms\n")
        r = self.table(*args, made)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("not a line about 16 MiB vectors", r.stderr)
        (self.dir / "host").write_text(warm + "host vadd_u32 16.0 MiB vectors, 4 ms apart: 41 runs, median 3.000 ms\n")
        self.assertEqual(self.table(*args, made).returncode, 0)
        self.assertEqual(self.table("render", made, md).returncode, 0)
        self.assertIn("the same loop, its runs 4 ms apart (`--pause-ms`), as a guest's requests come | — | — | — | — | 3.00 ms | — | — | 1.50× |", md.read_text())
        (self.dir / "host").write_text("host vadd_u32 16.0 MiB vectors, 4 ms apart: 41 runs, median 3.000 ms\n" + warm)
        r = self.table(*args, made)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("the plain loop first", r.stderr)
        # Interleaved rounds: per-round ratios and their median, judged against the target.
        rounds = "".join(
            f"VFPGA-BENCH round-{i}-{k} {'echo 64 B' if k == 'echo' else 'null op'}: 1000 round trips, "
            f"mean 1.0 us, p50 {p50} us, p99 9.0 us\n"
            for i, trio in enumerate(((60.0, 30.0, 200.0), (50.0, 40.0, 100.0), (90.0, 20.0, 300.0)), 1)
            for k, p50 in zip(("virtio", "polled", "echo"), trio))
        (self.dir / "guest").write_text("".join(lines) + rounds)
        (self.dir / "host").write_text(warm)
        self.assertEqual(self.table(*args, made).returncode, 0)
        self.assertEqual(self.table("render", made, md).returncode, 0)
        text = md.read_text()
        # virtio ÷ echo: 0.30, 0.50, 0.30 (median 0.30); polled: 0.15, 0.40, 0.067 (0.15).
        self.assertIn("| median | | | | 0.30× | 0.15× |", text)
        self.assertIn("median of the rounds | virtio (`/dev/vfpga0`) | 0.30× | ≤ 0.25× | not met |", text)
        self.assertIn("median of the rounds | virtio (`/dev/vfpga0`), `poll_us=50` | 0.15× | ≤ 0.25× | met |", text)
        (self.dir / "guest").write_text("".join(lines) + rounds.rsplit("VFPGA-BENCH", 1)[0])
        r = self.table(*args, made)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("round lines incomplete or repeated", r.stderr)
        (self.dir / "guest").write_text("".join(lines))
        self.assertEqual(self.table(*args, made).returncode, 0)
        # Rows missing what a ratio needs, or with values no run gives: refused, exit 2.
        good = made.read_text()
        for old, new, want in (
            (",100.0,300.0,110.0,4.00,2.00,", ",,300.0,110.0,4.00,2.00,", "virtio: no null_p50_us"),
            ("host-native,host,,,,,2.000,,", "host-native,host,,,,,,,", "host-native: no vadd16_ms"),
            ("host-native,host,,,,,2.000,,", "host-native,host,,,,,inf,,", "vadd16_ms must be a positive, finite number"),
        ):
            self.assertIn(old, good)
            made.write_text(good.replace(old, new, 1))
            r = self.table("render", made, md)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn(want, r.stderr)
            self.assertNotIn("Traceback", r.stderr)

    def hostile(self, name, text, want):
        for n in NAMES:
            src = BENCH / f"{n}.csv"
            (self.dir / f"{n}.csv").write_bytes(src.read_bytes())
        path = self.dir / f"{name}.csv"
        if text is None:
            path.unlink()
        else:
            path.write_bytes(text)
        r = plot(self.dir, self.dir / "out")
        self.assertEqual(r.returncode, 2, f"{text!r}: {r.stdout}{r.stderr}")
        self.assertNotIn("Traceback", r.stderr)
        self.assertIn(f"plot-bench.py: {path}", r.stderr)
        self.assertIn(want, r.stderr)
        self.assertFalse((self.dir / "out").exists(), "nothing is written from bad data")

    def test_bad_csv_files_are_refused_clearly(self):
        header = b"transport,percentile,us\n"
        cases = [
            ("latency", None, "No such file"),
            ("latency", b"", "no data"),
            ("latency", b"# only a comment\n", "no data"),
            ("latency", header, "no data"),
            ("latency", b"a,b,c\nx,1,2\n", "header a,b,c"),
            ("latency", header + b"vhost-user,50\n", "2 fields, expected 3"),
            ("latency", header + b"vhost-user,50,3,4\n", "4 fields"),
            ("latency", header + b"vhost-user,fifty,3\n", "could not convert"),
            ("latency", header + b"vhost-user,50,nan\n", "positive number"),
            ("latency", header + b"vhost-user,50,-3\n", "positive number"),
            ("latency", header + b"vhost-user,50,1e999\n", "positive number"),
            ("latency", header + b",50,3\n", "empty transport"),
            ("latency", header + b"vhost-user,100,3\n", "must be below 100"),
            ("latency", header + b"vhost-user,50,3\n\"unterminated,1,2\n", "fields"),
            ("latency", b"\xff\xfe\x00garbage", "codec"),
            ("latency", header + b"vhost-user,50,5e-324\n", "at least 1e-12"),
            ("latency", header + b"vhost-user,50," + b"9" * 200_000 + b"\n", "field larger than field limit"),
            ("throughput", b"transport,vector_bytes,ms,gib_per_s\nunix,4096,0.1\n", "3 fields"),
            ("remote", b"path,vector_bytes,ms,gib_per_s\nlocal,0,0.1,1\n", "positive number"),
        ]
        for name, text, want in cases:
            with self.subTest(name=name, text=text):
                self.hostile(name, text, want)
                for p in (self.dir / "out").glob("*"):
                    p.unlink()


if __name__ == "__main__":
    unittest.main()
