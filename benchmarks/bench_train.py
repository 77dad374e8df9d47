"""Training and inference throughput of the patch network: lifnet against snnTorch and Norse.

    python benchmarks/bench_train.py [--steps 25 100] [--batch 128] [--threads 2]
                                     [--rounds 5] [--reps 4] [--channels 1]

Every contender gets the same weights (checked: the output spikes of a batch are compared
with lifnet's), then the contenders are timed in one process, interleaved: in each round,
each contender runs ``reps`` training steps (forward, count cross-entropy, backward, Adam)
and then ``reps`` inference passes, the order rotating from round to round, so that the
machine's drift hits every contender alike. Printed: samples/s (median, min-max over the
rounds), lifnet's speed-up over each other contender round by round, and the peak memory
of a training step, measured in a fresh subprocess per contender (``--memory-child``): the
rise of the peak resident set size (VmHWM, reset through ``/proc/self/clear_refs`` after
``malloc_trim``) during three training steps, over the resident set size with the network,
its Adam state and the batch in place.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nets

print = functools.partial(print, flush=True)  # progress as it comes

CONTENDERS = ("lifnet", "lifnet-ref", "snntorch", "norse")


def _status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024.0
    raise KeyError(key)


def start_peak() -> float:
    """Return freed memory to the system, reset the peak resident set size (Linux:
    ``/proc/self/clear_refs``), and give the resident set size now (MiB): the baseline."""
    import ctypes
    import gc
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mib("VmRSS")


def peak_mib() -> float:
    """Peak resident set size (MiB) since the last :func:`start_peak`."""
    return _status_mib("VmHWM")


def memory_child(name: str, steps: int, channels: int, batch_size: int, threads: int) -> dict:
    """Peak training memory of one contender (run in its own process): the rise of the
    peak resident set size over the resident set size with the network, its optimiser
    state and the batch in place (after one warm-up step), during three training steps."""
    torch.set_num_threads(threads)
    x, y = nets.batch(batch_size)
    net = nets.build(name, steps, channels, pretrain=0)
    opt = nets.make_optimizer(net)
    nets.train_step(net, opt, x, y)           # warm-up: Adam state exists
    opt.zero_grad(set_to_none=True)
    base = start_peak()
    for _ in range(3):
        nets.train_step(net, opt, x, y)
    return {"name": name, "steps": steps, "training_peak_mib": peak_mib() - base,
            "base_mib": base}


def measure_memory(name, steps, channels, batch_size, threads) -> dict:
    cmd = [sys.executable, __file__, "--memory-child", name, "--steps", str(steps),
           "--channels", str(channels), "--batch", str(batch_size), "--threads", str(threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def check_same_spikes(models: dict, x: torch.Tensor) -> None:
    with torch.no_grad():
        ref = models["lifnet"](x)
        print(f"  output spikes of lifnet on {x.shape[0]} images: {int(ref.sum())} spikes in "
              f"{ref.numel()} entries")
        for name, m in models.items():
            if name == "lifnet":
                continue
            s = m(x)
            diff = int((s != ref).sum())
            print(f"  {name:10s} same output spikes as lifnet: {diff == 0} "
                  f"({diff} of {ref.numel()} entries differ)")


def run(steps: int, args) -> dict:
    torch.set_num_threads(args.threads)
    x, y = nets.batch(args.batch)
    names = [n for n in CONTENDERS if n in args.contenders]
    models = {n: nets.build(n, steps, args.channels) for n in names}
    opts = {n: nets.make_optimizer(m) for n, m in models.items()}
    print(f"\n== {steps} steps, batch {args.batch}, {args.threads} threads, {args.clock} clock, "
          f"{models['lifnet'].encoding.out_features} encoding neurons ==")
    check_same_spikes(models, x)
    for n in names:                                   # warm-up
        nets.train_step(models[n], opts[n], x, y)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    train = {n: [] for n in names}
    infer = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            m, o = models[n], opts[n]
            t = clock()
            for _ in range(args.reps):
                nets.train_step(m, o, x, y)
            train[n].append(args.reps * args.batch / (clock() - t))
            with torch.no_grad():
                t = clock()
                for _ in range(args.reps):
                    m(x)
                infer[n].append(args.reps * args.batch / (clock() - t))
    result = {"steps": steps, "train": train, "infer": infer}
    for kind, table in (("training", train), ("inference", infer)):
        print(f"  {kind} samples/s: median (min-max over {args.rounds} rounds)")
        for n in names:
            v = table[n]
            print(f"    {n:10s} {statistics.median(v):9.0f}  ({min(v):.0f}-{max(v):.0f})")
        for n in names:
            if n == "lifnet":
                continue
            ratios = [a / b for a, b in zip(table["lifnet"], table[n])]
            print(f"    lifnet / {n:10s} per round: "
                  + " ".join(f"{q:.2f}" for q in ratios)
                  + f"   median {statistics.median(ratios):.2f}")
    if not args.no_memory:
        print("  peak training memory (fresh subprocess each; rise of the peak resident set "
              "over the resident set with network, Adam state and batch loaded):")
        mem = {}
        for n in names:
            m = measure_memory(n, steps, args.channels, args.batch, args.threads)
            mem[n] = m["training_peak_mib"]
            print(f"    {n:10s} {m['training_peak_mib']:7.1f} MiB   (over a resident "
                  f"{m['base_mib']:.0f} MiB)")
        result["memory_mib"] = mem
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[25, 100])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=4, help="steps per contender per round")
    ap.add_argument("--channels", type=int, default=1, help="encoding neurons per patch")
    ap.add_argument("--contenders", nargs="+", default=list(CONTENDERS))
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall: elapsed time; cpu: this process's CPU time, which other "
                    "processes on a busy machine disturb less (use with --threads 1)")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.steps[0], args.channels,
                                      args.batch, args.threads)))
        return
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, threads {args.threads}, "
          f"load average {os.getloadavg()[0]:.1f}")
    results = [run(s, args) for s in args.steps]
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
