#!/usr/bin/env python3
"""Reads a TensorBoard log directory with TensorBoard's own reader (EventAccumulator, what
`tensorboard --logdir` uses) and prints every scalar as one line: TAG STEP VALUE.

usage: read_tensorboard.py DIR
"""
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main(directory):
    events = EventAccumulator(directory, size_guidance={"scalars": 0})  # 0: keep every event
    events.Reload()
    for tag in sorted(events.Tags()["scalars"]):
        for scalar in events.Scalars(tag):
            print(f"{tag} {scalar.step} {scalar.value!r}")


if __name__ == "__main__":
    main(sys.argv[1])
