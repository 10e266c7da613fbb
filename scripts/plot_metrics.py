#!/usr/bin/python3
"""Plots a run's metrics file (log.metrics, JSON lines) as a loss / bpc curve PNG: training bpc
per step and, where eval.every scored the valid split, valid bpc as markers.

usage: plot_metrics.py METRICS.jsonl OUT.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(path, out):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    steps = [r["step"] for r in rows]
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    ax_loss.plot(steps, [r["bpc"] for r in rows], label="bpc (full width)")
    if rows and "losses" in rows[0]:
        for i in range(len(rows[0]["losses"])):
            ax_loss.plot(steps, [r["losses"][i] / 0.6931471805599453 for r in rows],
                         label=f"bpc, width #{i}", alpha=0.6)
    scored = [r for r in rows if "valid_bpc" in r]
    if scored:
        ax_loss.plot([r["step"] for r in scored], [r["valid_bpc"] for r in scored], "o-",
                     color="black", label="valid bpc (full width)")
    ax_loss.set_ylabel("bits per byte")
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    ax_lr.plot(steps, [r["lr"] for r in rows], color="tab:green")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    ax_lr.grid(alpha=0.3)
    fig.suptitle(path)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"plot {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
