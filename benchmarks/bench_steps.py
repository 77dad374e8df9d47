"""Time per epoch and peak training memory against the window length (steps).

    python benchmarks/bench_steps.py [--steps 25 50 100 200] [--threads 2] [--batches 3]
                                     [--contenders lifnet snntorch]

For each contender and number of steps, in a fresh subprocess: the peak training memory
(as in ``bench_train.py``: the rise of the peak resident set during the training steps over
the resident set with network, Adam state and batch loaded) and the time of ``--batches``
training steps of batch 128, scaled to one epoch of mnist-5k's 4,500 training images (36
batches; the time is measured on a few batches, not a whole epoch, to keep the run short).
Then the slope of memory against steps (least squares), MiB per step, and lifnet's slope as
a fraction of each other's.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_train
import nets

print = functools.partial(print, flush=True)  # progress as it comes

EPOCH_SAMPLES = 4500          # mnist-5k training images after the 10 % validation split


def child(name: str, steps: int, batches: int, threads: int, channels: int) -> dict:
    torch.set_num_threads(threads)
    x, y = nets.batch(128)
    net = nets.build(name, steps, channels, pretrain=0)
    opt = nets.make_optimizer(net)
    nets.train_step(net, opt, x, y)
    opt.zero_grad(set_to_none=True)
    before = bench_train.start_peak()
    t = time.perf_counter()
    for _ in range(batches):
        nets.train_step(net, opt, x, y)
    per_batch = (time.perf_counter() - t) / batches
    return {"name": name, "steps": steps,
            "memory_mib": bench_train.peak_mib() - before,
            "epoch_s": per_batch * math.ceil(EPOCH_SAMPLES / 128)}


def slope(xs, ys) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((a - mx) * (b - my) for a, b in zip(xs, ys)) / sum((a - mx) ** 2 for a in xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[25, 50, 100, 200])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--contenders", nargs="+", default=["lifnet", "snntorch", "norse"])
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.batches, args.threads,
                               args.channels)))
        return
    rows = {}
    for steps in args.steps:
        for name in args.contenders:
            cmd = [sys.executable, __file__, "--child", name, str(steps), "--batches",
                   str(args.batches), "--threads", str(args.threads), "--channels",
                   str(args.channels)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows[name, steps] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"batch 128, {args.threads} threads; epoch = {EPOCH_SAMPLES} samples")
    print(f"{'contender':10s} {'steps':>5s} {'s/epoch':>8s} {'peak MiB':>9s}")
    for name in args.contenders:
        for steps in args.steps:
            r = rows[name, steps]
            print(f"{name:10s} {steps:5d} {r['epoch_s']:8.1f} {r['memory_mib']:9.1f}")
    slopes = {n: slope(args.steps, [rows[n, s]["memory_mib"] for s in args.steps])
              for n in args.contenders}
    print("memory slope (MiB per step): "
          + ", ".join(f"{n} {v:.2f}" for n, v in slopes.items()))
    for n in args.contenders:
        if n != "lifnet" and slopes[n] > 0:
            print(f"lifnet slope / {n} slope = {slopes['lifnet'] / slopes[n]:.2f}")


if __name__ == "__main__":
    main()
