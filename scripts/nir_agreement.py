"""Check that snnTorch and Norse, running a run's NIR export, predict what lifnet predicts.

Usage::

    python scripts/nir_agreement.py RUN_DIR [--out FILE.nir] [--limit N]

Exports RUN_DIR's network with ``lifnet export`` (or reads ``--out`` if it exists), loads
the NIR file into snnTorch (``snntorch.import_nir.import_from_nir``) and Norse
(``norse.torch.from_nir``) after :func:`lifnet.export.adapt_for_simulator`, runs the test
digits of the run's data set held for the window, and prints, for each simulator, the share
of output spikes and of predictions equal to lifnet's, and its accuracy. The same figures
for the file as written, without the adaptation, show what each difference costs.
Exit status 1 when a simulator agrees on fewer than 99% of the predictions.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import tempfile
from pathlib import Path

import torch


def _load(simulator: str, graph, dt: float):
    with contextlib.redirect_stdout(io.StringIO()):          # snnTorch prints warnings
        if simulator == "snntorch":
            from snntorch.import_nir import import_from_nir

            return import_from_nir(graph)
        import norse.torch

        return norse.torch.from_nir(graph, dt=dt)


def main() -> int:
    import nir

    from lifnet.checkpoint import load_model
    from lifnet.coding import Coding
    from lifnet.data import load_dataset, to_tensors
    from lifnet.export import adapt_for_simulator, export_nir, simulate

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--out", help="the NIR file (default: a temporary file)")
    ap.add_argument("--limit", type=int, default=None, help="test digits (default all)")
    ap.add_argument("--batch", type=int, default=250)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    torch.set_num_threads(2)

    model, cfg, _ = load_model(args.run_dir)
    coding = Coding(cfg.coding, cfg.network.steps, cfg.network.num_classes)
    ds = load_dataset(cfg.data.dataset, cfg.data.data_dir).limit(None, cfg.data.test_limit)
    x, y = to_tensors(ds.test_images, ds.test_labels)
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
    path = Path(args.out) if args.out else Path(tempfile.mkdtemp()) / "model.nir"
    if not path.exists():
        export_nir(model, path)
    graph = nir.read(str(path))
    dt, steps = float(graph.metadata["dt_ms"]), int(graph.metadata["steps"])
    print(f"{args.run_dir}: {cfg.network.output_synapse} output, {len(y)} {ds.name} test "
          f"digits, {steps} steps of {dt:g} ms, NIR file {path} "
          f"({path.stat().st_size / 1e6:.1f} MB)")

    with torch.no_grad():
        ref = torch.cat([model(x[i:i + args.batch]).spikes
                         for i in range(0, len(y), args.batch)], 1)
    ref_pred = coding.decode(ref)
    print(f"lifnet    accuracy {float((ref_pred == y).float().mean()):.4f}, "
          f"{int(ref.sum())} output spikes")
    ok = True
    for adapted in (True, False):
        for simulator in ("snntorch", "norse"):
            if not adapted and simulator == "snntorch":
                # snnTorch's importer refuses v_leak != 0 outright
                try:
                    _load(simulator, graph, dt)
                except AssertionError as e:
                    print(f"snntorch  on the file as written: import refused ({e})")
                continue
            g = adapt_for_simulator(graph, simulator, dt) if adapted else graph
            module = _load(simulator, g, dt)
            spikes = torch.cat([simulate(module, x[i:i + args.batch], steps, simulator)
                                for i in range(0, len(y), args.batch)], 1)
            pred = coding.decode(spikes)
            same_pred = float((pred == ref_pred).float().mean())
            what = "adapted" if adapted else "on the file as written"
            print(f"{simulator:9s} {what}: predictions equal to lifnet's {same_pred:.4f} "
                  f"({int((pred == ref_pred).sum())}/{len(y)}), output spikes equal "
                  f"{float((spikes == ref).float().mean()):.6f}, accuracy "
                  f"{float((pred == y).float().mean()):.4f}, {int(spikes.sum())} spikes")
            if adapted and same_pred < 0.99:
                ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    from lifnet.errors import LifnetError
    try:
        sys.exit(main())
    except (LifnetError, OSError) as e:          # a bad run folder or file: one line
        print(f"nir_agreement: error: {e}", file=sys.stderr)
        sys.exit(2)
