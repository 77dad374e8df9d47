"""The physical limit: floating-point work of one training sample against the measured
matrix-multiply rate of this machine.

    python benchmarks/matmul_rate.py [--threads 2] [--steps 25 100] [--channels 1]

Prints the float32 matmul rate (median of 7 runs of a 1024 x 1024 product and of the
output layer's own (T*B x N) @ (N x K) product), the work of one training sample by part,
and the samples/s that rate would allow if every operation ran at it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nets


def rate(a: torch.Tensor, b: torch.Tensor, runs: int = 7) -> float:
    torch.mm(a, b)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t)
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] / statistics.median(times) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, nargs="+", default=[25, 100])
    ap.add_argument("--channels", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    big = rate(torch.randn(1024, 1024), torch.randn(1024, 1024))
    print(f"float32 matmul, {args.threads} threads: {big:.1f} GFLOP/s (1024^3)")
    n = 576 * args.channels
    for steps in args.steps:
        own = rate(torch.randn(steps * 128, n), torch.randn(n, 10))
        work = nets.training_flops(steps, args.channels, 1)
        total = sum(work.values())
        print(f"\n{steps} steps: output layer's own product ({steps * 128} x {n}) @ ({n} x 10):"
              f" {own:.1f} GFLOP/s")
        for k, v in work.items():
            print(f"  {k:58s} {v / 1e6:7.2f} MFLOP")
        print(f"  {'one training sample':58s} {total / 1e6:7.2f} MFLOP")
        print(f"  bound at {big:.0f} GFLOP/s: {big * 1e9 / total:,.0f} samples/s; "
              f"at the output product's rate: {own * 1e9 / total:,.0f} samples/s")


if __name__ == "__main__":
    main()
