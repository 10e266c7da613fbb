#!/usr/bin/env python3
"""MatFormer across heads (ARCHITECTURE.md §9.6, issue 19): one joint run against independent runs.

Trains the quick start's model (configs/quickstart.ini, one process) on the bundled corpus once
with nested FFNs *and* nested heads under train.matformer = joint (sub-models (F, H) and
(F/2, H/2)), then each sub-model alone (train.matformer = off, model.ffn_widths and
model.head_widths fixing its widths) for the same number of steps, from the same seed. Prints the
valid bpc of every sub-model both ways (`hourglass eval` on the first --windows windows), and the
wall-clock of the joint run against the sum of the independent runs. A table goes to stdout and
to <run>/study.md.

    python3 scripts/study_nested_heads.py [--steps 300] [--windows 64] [--threads 2]

It expects a built tree (scripts/build.sh hourglass) or $HOURGLASS.
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def hourglass() -> str:
    return os.environ.get("HOURGLASS", str(ROOT / "build" / "hourglass"))


def run(args, **kw) -> str:
    done = subprocess.run(args, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, **kw)
    return done.stdout


def train(run_dir: pathlib.Path, data: pathlib.Path, steps: int, threads: int, extra) -> float:
    """Trains into run_dir; returns the wall-clock seconds."""
    args = [hourglass(), "train", "--config", str(ROOT / "configs/quickstart.ini"),
            "--parallel.pp", "1", "--eval.every", "0", "--train.steps", str(steps),
            "--train.warmup", str(max(1, steps // 10)), "--run.threads", str(threads),
            "--log.every", str(max(1, steps // 5)), "--data.dir", str(data),
            "--run.dir", str(run_dir)] + extra
    start = time.monotonic()
    out = run(args)
    seconds = time.monotonic() - start
    last = [line for line in out.splitlines() if line.startswith("step ")][-1:]
    print(f"  {run_dir.name}: {seconds:.1f} s  {last[0] if last else ''}", flush=True)
    return seconds


def valid_bpc(checkpoint: pathlib.Path, data: pathlib.Path, windows: int, extra) -> float:
    out = run([hourglass(), "eval", "--checkpoint", str(checkpoint), "--data", str(data),
               "--max-windows", str(windows), "--json"] + extra)
    return json.loads(out[out.rfind("{"):])["bpc"]


def last_checkpoint(run_dir: pathlib.Path) -> pathlib.Path:
    return sorted((run_dir / "checkpoints").glob("step-*.h5"))[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--windows", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dir", default="runs/study_nested_heads")
    o = parser.parse_args()
    top = pathlib.Path(o.dir)
    shutil.rmtree(top, ignore_errors=True)
    top.mkdir(parents=True)
    data = top / "data"
    run([hourglass(), "prep", "--input", str(ROOT / "data/corpus/common-licenses.txt"),
         "--output", str(data)])

    # The quick start's model: d 128, 4 heads, ffn 512, 6 stack blocks (2@1 2@3 2@1).
    blocks, ffn, heads = 6, 512, 4
    submodels = [(1, 1), (2, 2)]  # (FFN granularity, head granularity)
    nesting = ["--model.ffn_granularities", ",".join(str(f) for f, _ in submodels),
               "--model.head_granularities", ",".join(str(g) for _, g in submodels)]
    print(f"joint run: sub-models (F/f, H/g) = "
          f"{[(ffn // f, heads // g) for f, g in submodels]}, {o.steps} steps", flush=True)
    joint_seconds = train(top / "joint", data, o.steps, o.threads,
                          nesting + ["--train.matformer", "joint"])
    joint_ckpt = last_checkpoint(top / "joint")

    rows, alone_seconds = [], 0.0
    for f, g in submodels:
        w, h = ffn // f, heads // g
        widths = ["--ffn-widths", str(w), "--head-widths", str(h)]
        fixed = ["--model.ffn_widths", ",".join([str(w)] * blocks),
                 "--model.head_widths", ",".join([str(h)] * blocks)]
        seconds = train(top / f"alone_ffn{w}_heads{h}", data, o.steps, o.threads,
                        ["--train.matformer", "off"] + (fixed if (f, g) != (1, 1) else []))
        alone_seconds += seconds
        rows.append((w, h, valid_bpc(joint_ckpt, data, o.windows, widths),
                     valid_bpc(last_checkpoint(top / f"alone_ffn{w}_heads{h}"), data,
                               o.windows, []), seconds))

    lines = [f"Nested heads study: quick start model, {o.steps} steps, valid bpc on the first "
             f"{o.windows} windows, {o.threads} threads", "",
             "| FFN width | heads | joint run: valid bpc | trained alone: valid bpc | "
             "alone: seconds |", "|---|---|---|---|---|"]
    for w, h, joint_bpc, alone_bpc, seconds in rows:
        lines.append(f"| {w} | {h} | {joint_bpc:.4f} | {alone_bpc:.4f} | {seconds:.1f} |")
    lines += ["", f"wall-clock: joint run {joint_seconds:.1f} s, independent runs "
              f"{alone_seconds:.1f} s in all (joint / independent = "
              f"{joint_seconds / alone_seconds:.2f})"]
    text = "\n".join(lines) + "\n"
    print(text)
    (top / "study.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
