"""Where the time of one training step goes: per layer (CPU time) and per operator.

    python benchmarks/profile_step.py [--steps 25] [--threads 1] [--channels 1] [--fast 0 1]
                                      [--no-kernels]

Part by part (process CPU time, which a busy shared machine disturbs less than wall time):
patch synapses, encoding LIF, output synapses, output LIF, loss, backward, Adam; then the
top operators from ``torch.profiler``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nets

from lifnet.fast import encode_dense


def parts(model, coding, x, y, opt, steps: int, rounds: int = 5) -> dict:
    clock = time.process_time
    acc: dict[str, float] = {}

    def lap(name, t0):
        t = clock()
        acc[name] = acc.get(name, 0.0) + t - t0
        return t

    net = model.net
    for r in range(rounds + 1):
        if r == 1:
            acc.clear()
        t = clock()
        cur = net.encoding(x)
        t = lap("patch synapses fwd", t)
        if net._fuses(cur):           # CPU kernels: encoding LIF and output synapses in one
            lif = net.encoding_lif
            c2 = encode_dense(cur, net.output.weight, net.output.bias, lif.params, steps,
                              lif.surrogate, lif.surrogate_width, lif.detach_reset)
            t = lap("encoding LIF + output synapses fwd (fused)", t)
        else:
            enc, _ = net.encoding_lif(cur, steps=steps)
            t = lap("encoding LIF fwd", t)
            c2 = net.output(enc)
            t = lap("output synapses fwd", t)
        out, _ = net.output_lif(c2)
        t = lap("output LIF fwd", t)
        loss = coding.loss(out, y)
        t = lap("loss", t)
        opt.zero_grad()
        loss.backward()
        t = lap("backward (all layers)", t)
        opt.step()
        lap("Adam", t)
    return {k: v / rounds * 1e3 for k, v in acc.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--fast", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--no-kernels", action="store_true",
                    help="fast paths without the numba CPU kernels (the PyTorch loops and "
                    "closed form that run on a GPU)")
    args = ap.parse_args()
    if args.no_kernels:
        from lifnet import fast
        fast._STATE["kernels"] = False
    torch.set_num_threads(args.threads)
    x, y = nets.batch(128)
    for fast in args.fast:
        model = nets.LifnetNet(args.steps, args.channels, fast=bool(fast))
        opt = nets.make_optimizer(model)
        ms = parts(model, model.coding, x, y, opt, args.steps)
        kern = ", no kernels" if args.no_kernels and fast else ""
        print(f"\n== fast={bool(fast)}{kern}, {args.steps} steps, batch 128, {args.threads} "
              f"thread(s): CPU ms per training step ==")
        for k, v in ms.items():
            print(f"  {k:44s} {v:8.2f}")
        print(f"  {'total':44s} {sum(ms.values()):8.2f}")
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                nets.train_step(model, opt, x, y)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))


if __name__ == "__main__":
    main()
