#!/usr/bin/python3
"""CTest checks of scripts/scaling (tests/scaling_tests.cmake).

  test_scaling.py sweep   --hourglass BIN --out DIR   the tiny grid end to end: every point is
      measured (a results.csv row with every column filled) or, for tp > 1 while tensor
      parallelism is unavailable, listed in skipped.csv; the four plots are PNG files.
  test_scaling.py compare --hourglass BIN --out DIR   calibration, sweep and plan on the tiny
      grid: compare.csv has a prediction for every measured point.
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = os.path.join(ROOT, "scripts", "scaling")
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
        print("FAIL:", message)


def is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 2000


def sweep(opts):
    subprocess.run([sys.executable, os.path.join(SCRIPTS, "sweep"), "--grid", "tiny", "--out",
                    opts.out, "--hourglass", opts.hourglass], check=True)
    points = json.load(open(os.path.join(opts.out, "points.json")))["points"]
    results = list(csv.DictReader(open(os.path.join(opts.out, "results.csv"))))
    skipped = list(csv.DictReader(open(os.path.join(opts.out, "skipped.csv"))))
    ids = [r["id"] for r in results] + [r["id"] for r in skipped]
    check(sorted(ids) == sorted(p["id"] for p in points),
          f"every point once in results.csv or skipped.csv: {ids}")
    check(len(points) >= 6, f"the tiny grid has {len(points)} points")
    for r in skipped:
        check(int(r["tp"]) > 1 and "tensor parallelism" in r["reason"],
              f"only tp > 1 may be skipped: {r}")
    layouts = {(r["dp"], r["pp"]) for r in results}
    check({("1", "1"), ("2", "1"), ("1", "2")} <= layouts, f"dp and pp points measured: {layouts}")
    header = open(os.path.join(opts.out, "results.csv")).readline().strip().split(",")
    for r in results:
        for column in header:
            check(r[column] not in ("", None), f"{r['id']}: column {column} is empty")
        check(float(r["step_seconds"]) > 0 and float(r["tokens_per_second"]) > 0,
              f"{r['id']}: positive step time and throughput")
        check(0 <= float(r["bubble_measured"]) <= 1, f"{r['id']}: bubble in [0, 1]")
        check(len(r["peak_rss_mb_ranks"].split(";")) == int(r["ranks"]),
              f"{r['id']}: one peak memory per rank")
        check(float(r["peak_rss_mb_max"]) > 1, f"{r['id']}: peak memory measured")
        check(int(r["steps"]) == 4, f"{r['id']}: 4 steps")
    for name in ["throughput", "bubble", "memory", "timeline"]:
        path = os.path.join(opts.out, "plots", name + ".png")
        check(os.path.exists(path) and is_png(path), f"plot {path}")


def compare(opts):
    subprocess.run([sys.executable, os.path.join(SCRIPTS, "compare"), "--grid", "tiny", "--out",
                    opts.out, "--hourglass", opts.hourglass, "--repeats", "2", "--rounds", "2"],
                   check=True)
    results = list(csv.DictReader(open(os.path.join(opts.out, "sweep", "results.csv"))))
    rows = list(csv.DictReader(open(os.path.join(opts.out, "compare.csv"))))
    check(len(rows) == len(results) and rows, f"{len(rows)} predictions for {len(results)} points")
    for r in rows:
        check(float(r["predicted_ms"]) > 0, f"{r['id']}: a positive prediction")
    check(os.path.exists(os.path.join(opts.out, "compare.md")), "compare.md written")
    # Calibrated before the runs and after each of the 2 rounds, and the mean of the three.
    for name in sorted({(r["model"], r["seq_len"]) for r in rows}):
        path = os.path.join(opts.out, f"calibration-{name[0]}-L{name[1]}.txt")
        for part in ["", ".0", ".1", ".2"]:
            check(os.path.exists(path + part), f"{path + part} written")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["sweep", "compare"])
    p.add_argument("--hourglass", required=True)
    p.add_argument("--out", required=True)
    opts = p.parse_args()
    shutil.rmtree(opts.out, ignore_errors=True)
    {"sweep": sweep, "compare": compare}[opts.what](opts)
    print(f"{opts.what}: {'FAILED' if failures else 'ok'} ({len(failures)} failures)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
