r"""Export a trained PatchNet as a NIR graph (Neuromorphic Intermediate Representation).

The graph, in order::

    input (H*W,)           the image, flattened row by row, pixels in [0, 1], held
                           constant for the whole window (one copy per time step)
    encoding   Affine      (P*C, H*W): the locally connected patch synapses as a dense
                           matrix that is zero outside each neuron's patch; weights and
                           bias in nA (the encoding gain is folded in)
    encoding_lif  LIF
    hidden_i   Affine, hidden_i_lif LIF     for each hidden layer (nA per spike)
    output     Affine      (K, N): dense output synapses, nA per spike
    output_lif LIF
    output (K,)            output spikes

LIF nodes carry lifnet's own neuron in NIR's equation
``tau * dv/dt = (v_leak - v) + r * I``, spike when ``v > v_threshold``, then
``v <- v_reset``, in lifnet's units: ``tau`` in ms, ``r`` in MOhm, ``v_leak`` (lifnet's
``v_rest``), ``v_threshold`` and ``v_reset`` in mV, currents in nA. The graph's metadata
give the time step (``dt_ms``), the window (``steps``), the units and lifnet's version.

What NIR cannot say, export refuses with an :class:`ExportError` naming it:
``time_indexed`` output synapses (a weight per time step), a refractory period, the
``subtract`` reset and a starting potential other than ``v_rest``.

Simulators. NIR is continuous in time; a simulator discretises it its own way, and the
two that import NIR in PyTorch differ from lifnet (and from the file) in four ways, each
undone exactly by :func:`adapt_for_simulator`:

1. Integration. lifnet integrates exactly over a step (``beta = exp(-dt/tau)``);
   snnTorch and Norse take one forward-Euler step (``1 - dt/tau``). An Euler time
   constant ``tau_e = dt / (1 - exp(-dt/tau))`` makes Euler's step equal to the exact one.
2. Time step. Norse takes ``dt`` from the caller (give it in ms, as ``tau``); snnTorch
   fixes ``dt = 1e-4``, so ``tau`` is rescaled to ``tau_e * 1e-4 / dt``.
3. Potentials. snnTorch requires ``v_leak = 0`` and resets to 0; Norse's importer drops
   ``v_reset`` (so resets to 0). Shifting every potential by ``-v_rest`` (allowed: the
   equation only sees differences) gives ``v_leak = v_reset = 0``,
   ``v_threshold = v_th - v_rest``; it needs ``v_reset = v_rest``.
4. Resistance. Norse ignores ``r``; snnTorch folds ``r * dt / tau`` into its threshold.
   Multiplying the preceding affine map by ``r`` and setting ``r = 1`` keeps ``r * I``.

Left over: the threshold test (lifnet spikes at ``v >= v_th``, NIR and both simulators at
``v > v_th``) and float32 rounding in a different order; they flip a spike only when a
potential lands within rounding of the threshold.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import LifnetError


class ExportError(LifnetError):
    """The network has a part that the export format cannot express."""


SIMULATORS = ("snntorch", "norse")
SNNTORCH_DT = 1e-4      # the time step snnTorch's NIR import assumes


def _require_nir():
    try:
        import nir
    except ImportError:
        raise ExportError("NIR export needs the nir package: accepted: pip install nir")
    return nir


def encoding_matrix(model) -> tuple[np.ndarray, np.ndarray]:
    """The patch synapses as a dense ``(P*C, H*W)`` matrix and ``(P*C,)`` bias, in nA.

    Row ``p * C + c`` is neuron ``(p, c)``; column ``h * W + w`` is pixel ``(h, w)``; the
    entries outside the neuron's patch are zero.
    """
    enc = model.encoding
    h, w = enc.image_size
    k, s, c = enc.patch_size, enc.stride, enc.channels
    gh, gw = enc.grid
    weight = enc.weight.detach().cpu().to(torch.float64) * enc.gain    # (P, C, k*k)
    dense = torch.zeros(gh * gw, c, h * w, dtype=torch.float64)
    a, b = torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij")
    for i in range(gh):
        for j in range(gw):
            cols = ((i * s + a) * w + (j * s + b)).flatten()         # (k*k,) pixel indices
            dense[i * gw + j][:, cols] = weight[i * gw + j]
    bias = enc.bias.detach().cpu().to(torch.float64) * enc.gain
    return (dense.reshape(gh * gw * c, h * w).numpy().astype(np.float32),
            bias.reshape(-1).numpy().astype(np.float32))


def _lif_node(nir, params, n: int):
    def full(value: float) -> np.ndarray:
        return np.full(n, value, dtype=np.float32)

    return nir.LIF(tau=full(params.tau_m), r=full(params.resistance),
                   v_leak=full(params.v_rest), v_threshold=full(params.v_th),
                   v_reset=full(params.v_reset))


def check_exportable(model) -> None:
    """ExportError if ``model`` has a part that NIR cannot express."""
    from .layers import TimeIndexedSynapse

    if isinstance(model.output, TimeIndexedSynapse):
        raise ExportError(
            "network.output_synapse = 'time_indexed' (or 'time_indexed_integrated') cannot "
            "be exported: NIR has no synapse whose weight changes with the time step: "
            "accepted: 'dense' output synapses")
    p = model.output_lif.params
    if p.refractory_steps:
        raise ExportError(f"neuron.t_ref = {p.t_ref} ms cannot be exported: NIR's LIF has no "
                          "refractory period: accepted: 0")
    if p.reset != "to_reset":
        raise ExportError(f"neuron.reset = {p.reset!r} cannot be exported: NIR's LIF resets "
                          "to v_reset: accepted: 'to_reset'")
    if p.v_init != p.v_rest:
        raise ExportError(f"neuron.v_init = {p.v_init} mV cannot be exported: NIR has no "
                          f"starting potential (it starts at rest): accepted: v_rest = "
                          f"{p.v_rest} mV")


def to_nir(model, metadata: dict[str, Any] | None = None):
    """The NIR graph of a trained PatchNet (see the module docstring)."""
    nir = _require_nir()
    from . import __version__

    check_exportable(model)
    p = model.output_lif.params
    h, w = model.image_size
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    nodes["input"] = nir.Input(input_type=np.array([h * w]))
    weight, bias = encoding_matrix(model)
    nodes["encoding"] = nir.Affine(weight=weight, bias=bias)
    nodes["encoding_lif"] = _lif_node(nir, model.encoding_lif.params, weight.shape[0])
    edges += [("input", "encoding"), ("encoding", "encoding_lif")]
    last = "encoding_lif"
    for i, synapse in enumerate(model.hidden):
        wt = synapse.weight.detach().cpu().numpy().astype(np.float32)
        b = (synapse.bias.detach().cpu().numpy().astype(np.float32) if synapse.bias is not None
             else np.zeros(wt.shape[0], dtype=np.float32))
        nodes[f"hidden_{i}"] = nir.Affine(weight=wt, bias=b)
        nodes[f"hidden_{i}_lif"] = _lif_node(nir, model.hidden_lif.params, wt.shape[0])
        edges += [(last, f"hidden_{i}"), (f"hidden_{i}", f"hidden_{i}_lif")]
        last = f"hidden_{i}_lif"
    wt = model.output.weight.detach().cpu().numpy().astype(np.float32)
    b = (model.output.bias.detach().cpu().numpy().astype(np.float32)
         if model.output.bias is not None else np.zeros(wt.shape[0], dtype=np.float32))
    nodes["output_synapse"] = nir.Affine(weight=wt, bias=b)
    nodes["output_lif"] = _lif_node(nir, p, wt.shape[0])
    nodes["output"] = nir.Output(output_type=np.array([wt.shape[0]]))
    edges += [(last, "output_synapse"), ("output_synapse", "output_lif"),
              ("output_lif", "output")]
    meta = {"producer": f"lifnet {__version__}", "dt_ms": float(p.dt),
            "steps": int(model.steps),
            "units": "tau ms, r MOhm, v_leak v_threshold v_reset mV, affine weights and "
                     "bias nA (per spike; encoding: per unit pixel)",
            "input": f"image of {h} x {w} pixels in [0, 1], flattened row by row, the same "
                     "at every step",
            **(metadata or {})}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def export_nir(model, path: str | Path, metadata: dict[str, Any] | None = None) -> None:
    """Write the NIR graph of ``model`` to ``path`` (HDF5), through a temporary file."""
    nir = _require_nir()
    graph = to_nir(model, metadata)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        nir.write(str(tmp), graph)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def adapt_for_simulator(graph, simulator: str, dt: float):
    """A copy of a lifnet NIR graph that ``simulator`` runs as lifnet does (see above).

    Parameters
    ----------
    graph : nir.NIRGraph
        As written by :func:`to_nir` (``tau`` in ms).
    simulator : {"snntorch", "norse"}
    dt : float
        lifnet's time step in ms (``graph.metadata["dt_ms"]``). Run Norse with this ``dt``.
    """
    nir = _require_nir()
    if simulator not in SIMULATORS:
        raise ExportError(f"simulator {simulator!r}: accepted: {' or '.join(SIMULATORS)}")
    graph = copy.deepcopy(graph)
    pre = {post: pre for pre, post in graph.edges}
    for name, node in list(graph.nodes.items()):
        if not isinstance(node, nir.LIF):
            continue
        if not np.allclose(node.v_reset, node.v_leak):
            raise ExportError(f"{name}: v_reset differs from v_leak: accepted: equal (the "
                              "simulators reset to the leak potential)")
        beta = np.exp(-dt / node.tau.astype(np.float64))
        tau_euler = dt / (1.0 - beta)
        tau = tau_euler * (SNNTORCH_DT / dt) if simulator == "snntorch" else tau_euler
        synapse = graph.nodes[pre[name]]
        r = node.r.astype(np.float64)
        graph.nodes[pre[name]] = nir.Affine(
            weight=(synapse.weight * r[:, None]).astype(np.float32),
            bias=(synapse.bias * r).astype(np.float32))
        zeros = np.zeros_like(node.v_leak)
        graph.nodes[name] = nir.LIF(
            tau=tau.astype(np.float32), r=np.ones_like(node.r),
            v_leak=zeros, v_threshold=(node.v_threshold - node.v_leak).astype(np.float32),
            v_reset=zeros.copy())
    return graph


def simulate(module, images: torch.Tensor, steps: int, simulator: str,
             dt: float | None = None) -> torch.Tensor:
    """Run an imported NIR module on ``(B, H, W)`` images held for ``steps`` steps.

    Returns the output spikes ``(T, B, K)``. ``module`` comes from
    ``snntorch.import_from_nir`` or ``norse.torch.from_nir`` on a graph made by
    :func:`adapt_for_simulator`.
    """
    x = images.flatten(1).to(torch.float32)
    out = []
    with torch.no_grad():
        if simulator == "snntorch":
            from snntorch import utils as snn_utils

            snn_utils.reset(module)
            for _ in range(steps):
                s = module(x)
                out.append(s[0] if isinstance(s, tuple) else s)
        else:
            state = None
            for _ in range(steps):
                s, state = module(x, state)
                out.append(s)
    return torch.stack(out).float()


__all__ = ["ExportError", "adapt_for_simulator", "check_exportable", "encoding_matrix",
           "export_nir", "simulate", "to_nir"]
