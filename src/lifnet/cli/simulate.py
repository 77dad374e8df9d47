"""``lifnet simulate``: one LIF neuron under a current: spike times, rates, plots.

``lifnet simulate --current NA|BEFORE:AFTER@MS|FILE [--steps N | --duration MS] [neuron
flags] [--json] [--plot FILE.png]`` runs one neuron (the library's :func:`lif_simulate`, in
float64) and prints its spike steps and times, the count and the rate over the window and, for
a constant current in ``to_reset`` mode, what the closed form says (spike steps, stepped and
continuous rates). ``--plot`` draws the membrane trace with the threshold, the reset level
and the spikes marked, over the current.

``lifnet simulate --fi START:STOP:STEP [--plot fi.png]`` sweeps constant currents from START
to STOP nA (inclusive) and draws the f-I curve: the simulated rate (1000 / mean inter-spike
interval in ms, over a 1000 ms window unless ``--steps``/``--duration`` says otherwise) on the
closed forms, stepped and continuous.

The current forms: a number (nA, held for the whole window); ``BEFORE:AFTER@MS`` (BEFORE nA,
then AFTER nA from the first step that starts at or after MS ms); or a text file with one
value in nA per step (blank lines and lines starting with ``#`` are skipped; the window is the
file's length unless ``--steps``/``--duration`` is given, which must then match it).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import atomic_write
from ..errors import ConfigError, bad_value
from ..neuron import (
    RESET_MODES,
    LIFParameters,
    firing_rate,
    first_spike_step,
    interspike_steps,
    lif_simulate,
    stepped_rate,
)
from .common import say

DEFAULT_STEPS = 100          # lifnet simulate: the notebook's window
DEFAULT_FI_MS = 1000.0       # lifnet simulate --fi: window for the measured rate
MAX_STEPS = 1_000_000
MAX_FI_POINTS = 2000
_TOL = 1e-9


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "simulate", help="one neuron under a current: spike times, rate, membrane plot",
        description="Simulate one LIF neuron (units: nA, mV, ms, MOhm, nF). Prints the spike "
        "steps and times, the rate and, for a constant current, the closed form's; --fi "
        "sweeps currents and draws the f-I curve.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--current", metavar="NA|BEFORE:AFTER@MS|FILE",
                      help="constant current in nA; a step, e.g. 0:20@50 (0 nA, then 20 nA "
                      "from 50 ms); or a file of one value (nA) per step")
    what.add_argument("--fi", metavar="START:STOP:STEP",
                      help="f-I curve: constant currents START to STOP nA by STEP")
    win = p.add_mutually_exclusive_group()
    win.add_argument("--steps", type=int, metavar="N",
                     help=f"window in steps (default {DEFAULT_STEPS}; --fi: "
                     f"{DEFAULT_FI_MS:g} ms; a file: its length)")
    win.add_argument("--duration", type=float, metavar="MS",
                     help="window in ms, a whole number of --dt")
    p.add_argument("--resistance", type=float, default=1.0, metavar="MOHM",
                   help="membrane resistance (default 1 MOhm)")
    tau = p.add_mutually_exclusive_group()
    tau.add_argument("--capacitance", type=float, metavar="NF",
                     help="membrane capacitance (tau_m = R * C)")
    tau.add_argument("--tau-m", type=float, metavar="MS",
                     help="membrane time constant (default 10 ms)")
    p.add_argument("--v-rest", type=float, default=-65.0, metavar="MV",
                   help="resting potential (default -65 mV)")
    p.add_argument("--v-reset", type=float, metavar="MV", help="reset potential (default "
                   "--v-rest)")
    p.add_argument("--v-th", type=float, default=-50.0, metavar="MV",
                   help="threshold (default -50 mV)")
    p.add_argument("--v-init", type=float, metavar="MV",
                   help="potential at the start (default --v-rest)")
    p.add_argument("--t-ref", type=float, default=0.0, metavar="MS",
                   help="refractory period (default 0 ms; held ceil(t_ref / dt) steps)")
    p.add_argument("--dt", type=float, default=1.0, metavar="MS", help="time step (default 1)")
    p.add_argument("--reset", choices=RESET_MODES, default="to_reset",
                   help="to_reset: V <- v_reset; subtract: V <- V - (v_th - v_reset)")
    p.add_argument("--spontaneous", action="store_true",
                   help="allow --v-th at or below --v-rest (fires with no input)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="FILE.png", help="draw the membrane trace (or the f-I "
                   "curve with --fi) into this image")
    return p


# -- flags to parameters -------------------------------------------------------------------


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def neuron_from_args(args: argparse.Namespace) -> LIFParameters:
    """The neuron of the flags; an out-of-range value is reported under its flag's name."""
    try:
        return LIFParameters(
            resistance=args.resistance, capacitance=args.capacitance, tau_m=args.tau_m,
            v_rest=args.v_rest, v_reset=args.v_reset, v_th=args.v_th, v_init=args.v_init,
            t_ref=args.t_ref, dt=args.dt, reset=args.reset, spontaneous=args.spontaneous)
    except ConfigError as e:
        message = re.sub(r"^neuron\.(\w+)", lambda m: _flag(m.group(1)), str(e))
        message = re.sub(r"> (v_reset|v_rest) =", lambda m: f"> {_flag(m.group(1))} =", message)
        raise ConfigError(message.replace("spontaneous=True", "--spontaneous"))


def window_steps(args: argparse.Namespace, dt: float, default: int) -> int:
    """Steps in the window from ``--steps`` or ``--duration``, else ``default``."""
    if args.steps is not None:
        if not 1 <= args.steps <= MAX_STEPS:
            raise bad_value("--steps", args.steps, f"1 to {MAX_STEPS}")
        return args.steps
    if args.duration is not None:
        n = args.duration / dt if math.isfinite(args.duration) else math.nan
        whole = round(n) if math.isfinite(n) else 0
        if not (1 <= whole <= MAX_STEPS and abs(n - whole) <= _TOL * max(1.0, n)):
            raise bad_value("--duration", args.duration,
                            f"a whole number of --dt = {dt!r} ms, 1 to {MAX_STEPS} steps")
        return whole
    return default


@dataclass
class Current:
    """The input current: ``kind`` constant, step or file, and how to lay it over steps."""

    kind: str
    text: str
    value: float | None = None          # constant
    before: float | None = None         # step
    after: float | None = None
    at_ms: float | None = None
    values: np.ndarray | None = None    # file

    def per_step(self, steps: int, dt: float) -> np.ndarray:
        """``(steps,)`` current in nA, one value per step."""
        if self.kind == "constant":
            return np.full(steps, self.value)
        if self.kind == "step":
            out = np.full(steps, self.after)
            switch = max(0, math.ceil(self.at_ms / dt - _TOL))
            out[:switch] = self.before
            return out
        return self.values.copy()

    def describe(self) -> str:
        if self.kind == "constant":
            return f"{self.value:g} nA"
        if self.kind == "step":
            return f"{self.before:g} nA, then {self.after:g} nA from {self.at_ms:g} ms"
        return f"{len(self.values)} values from {self.text}"


_STEP = re.compile(r"^([^:@]+):([^:@]+)@([^:@]+)$")


def _finite(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_current(text: str) -> Current:
    """``--current``: a number, ``BEFORE:AFTER@MS`` or a file of one value per step."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is not None:
        if not math.isfinite(value):
            raise bad_value("--current", text, "a finite current in nA")
        return Current("constant", text, value=value)
    path = Path(text)
    if path.is_file():
        return Current("file", text, values=read_current_file(path))
    if ":" in text or "@" in text:
        m = _STEP.match(text)
        parts = [_finite(g) for g in m.groups()] if m else [None]
        if None in parts or parts[2] < 0:
            raise ConfigError(f"--current = {text!r} is not a step: accepted: BEFORE:AFTER@MS "
                              "with finite nA values and MS >= 0, e.g. 0:20@50")
        return Current("step", text, before=parts[0], after=parts[1], at_ms=parts[2])
    raise ConfigError(f"--current = {text!r} is not valid: accepted: a current in nA, a "
                      "step BEFORE:AFTER@MS, or a file of one value per step (no such file)")


def read_current_file(path: Path) -> np.ndarray:
    """One current (nA) per line; blank lines and ``#`` comments skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--current {path}: cannot read the file: {e}")
    values = []
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        value = _finite(line)
        if value is None:
            raise ConfigError(f"--current {path} line {number}: {line[:40]!r} is not a finite "
                              "number: accepted: one current in nA per line")
        values.append(value)
    if not values:
        raise ConfigError(f"--current {path} is empty: accepted: a file of one current (nA) "
                          "per step")
    if len(values) > MAX_STEPS:
        raise bad_value("--current", str(path), f"at most {MAX_STEPS} values")
    return np.array(values)


def parse_fi(text: str) -> np.ndarray:
    """``--fi START:STOP:STEP`` to the currents in nA, STOP included."""
    parts = [_finite(x) for x in text.split(":")]
    if len(parts) != 3 or None in parts or parts[2] <= 0 or parts[1] < parts[0]:
        raise ConfigError(f"--fi = {text!r} is not valid: accepted: START:STOP:STEP in nA "
                          "with STOP >= START and STEP > 0, e.g. 0:50:1")
    start, stop, step = parts
    count = math.floor((stop - start) / step + _TOL) + 1
    if count > MAX_FI_POINTS:
        raise bad_value("--fi", text, f"at most {MAX_FI_POINTS} currents")
    return start + step * np.arange(count)


def _check_plot_path(path: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    out = Path(path)
    suffix = out.suffix.lower().lstrip(".")
    formats = Figure().canvas.get_supported_filetypes()
    if suffix not in formats:
        raise ConfigError(f"--plot = {path!r} is not valid: accepted: a file name ending in "
                          f".png (or {', '.join('.' + f for f in sorted(formats) if f != 'png')})")
    if not out.parent.is_dir():
        raise ConfigError(f"--plot = {path!r}: the folder {str(out.parent)!r} does not exist")
    return out


def _save(fig, out: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format=out.suffix.lower().lstrip("."), dpi=120)
    atomic_write(out, buffer.getvalue())


def _params_dict(p: LIFParameters) -> dict:
    return {f.name: getattr(p, f.name) for f in fields(p)}


def _params_line(p: LIFParameters) -> str:
    return (f"R {p.resistance:g} MOhm, C {p.capacitance:g} nF, tau_m {p.tau_m:g} ms, "
            f"v_rest {p.v_rest:g} mV, v_reset {p.v_reset:g} mV, v_th {p.v_th:g} mV, "
            f"v_init {p.v_init:g} mV, t_ref {p.t_ref:g} ms ({p.refractory_steps} steps), "
            f"dt {p.dt:g} ms, reset {p.reset}")


def _short(values: list, limit: int = 20) -> str:
    text = ", ".join(f"{v:g}" for v in values[:limit])
    return text + (f", ... ({len(values) - limit} more)" if len(values) > limit else "")


# -- one neuron ------------------------------------------------------------------------------


CLOSED_FORM_KEYS = ("closed_form_spike_steps", "closed_form_spike_count",
                    "closed_form_first_spike_step", "closed_form_interspike_steps",
                    "closed_form_stepped_rate_hz", "closed_form_rate_hz")


def closed_form(current: float, p: LIFParameters, steps: int) -> dict:
    """What the closed form says for a constant current (``to_reset`` mode)."""
    first, isi = first_spike_step(current, p), interspike_steps(current, p)
    if first is None or first >= steps:
        expected = []
    elif isi is None:
        expected = [first]
    else:
        expected = list(range(first, steps, isi))
    values = (expected, len(expected), first, isi, stepped_rate(current, p),
              firing_rate(current, p))
    return dict(zip(CLOSED_FORM_KEYS, values))


def simulate_one(p: LIFParameters, current: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Spike steps and the potential after every step (after reset), in mV."""
    spikes, v, _ = lif_simulate(torch.from_numpy(current)[:, None], p, record_v=True)
    steps = torch.nonzero(spikes[:, 0]).flatten().tolist()
    return steps, v[:, 0].numpy()


def run(args: argparse.Namespace) -> int:
    p = neuron_from_args(args)
    if args.fi is not None:
        return run_fi(args, p)
    current = parse_current(args.current)
    default = len(current.values) if current.kind == "file" else DEFAULT_STEPS
    steps = window_steps(args, p.dt, default)
    if current.kind == "file" and steps != len(current.values):
        raise ConfigError(f"--current {current.text} has {len(current.values)} values: "
                          f"accepted: one per step of the window, {steps} steps")
    out = _check_plot_path(args.plot) if args.plot else None

    per_step = current.per_step(steps, p.dt)
    spike_steps, v = simulate_one(p, per_step)
    window_ms = steps * p.dt
    result = {
        "spike_steps": spike_steps,
        "spike_times_ms": [n * p.dt for n in spike_steps],
        "spike_count": len(spike_steps),
        "rate_hz": 1000.0 * len(spike_steps) / window_ms,
        "steps": steps, "dt_ms": p.dt, "window_ms": window_ms,
        "current": {"kind": current.kind, "text": current.text},
        "neuron": _params_dict(p),
    }
    if current.kind == "constant" and p.reset == "to_reset":
        result.update(closed_form(current.value, p, steps))
        result["closed_form_agrees"] = result["closed_form_spike_steps"] == spike_steps
    else:
        result.update(dict.fromkeys(CLOSED_FORM_KEYS))
        result["closed_form_agrees"] = None
    if out is not None:
        _save(membrane_figure(p, per_step, spike_steps, v, current), out)
        result["plot"] = str(out)

    if args.json:
        print(json.dumps(result))
        return 0
    say(False, f"neuron: {_params_line(p)}")
    say(False, f"current: {current.describe()}; window {steps} steps = {window_ms:g} ms")
    if spike_steps:
        say(False, f"spikes: {len(spike_steps)} at steps {_short(spike_steps)}")
        say(False, f"        times {_short(result['spike_times_ms'])} ms")
    else:
        say(False, "spikes: none")
    say(False, f"rate: {result['rate_hz']:.4g} Hz ({len(spike_steps)} spikes in {window_ms:g} ms)")
    if result["closed_form_agrees"] is not None:
        verdict = "equal to the simulation" if result["closed_form_agrees"] else "DIFFERENT"
        say(False, f"closed form: spike steps {_short(result['closed_form_spike_steps'])} "
            f"({verdict})")
        say(False, f"             rate {result['closed_form_stepped_rate_hz']:.4g} Hz stepped "
            f"(periodic regime), {result['closed_form_rate_hz']:.4g} Hz continuous f(I)")
    elif current.kind == "constant":
        say(False, "closed form: only for --reset to_reset")
    if out is not None:
        say(False, f"plot: {out}")
    return 0


def membrane_figure(p: LIFParameters, current: np.ndarray, spike_steps: list[int],
                    v: np.ndarray, source: Current):
    """Membrane potential (mV) over time (ms) with threshold, reset and spikes; the current."""
    from matplotlib.figure import Figure

    steps = len(current)
    t_edges = np.arange(steps + 1) * p.dt
    before = np.concatenate([[p.v_init], v[:-1]])
    # the potential reached in a spiking step, before its reset
    peak = p.v_rest + (before - p.v_rest) * p.beta + (1 - p.beta) * p.resistance * current
    times, trace = [0.0], [p.v_init]
    spiking = set(spike_steps)
    for n in range(steps):
        if n in spiking:
            times.append(t_edges[n + 1])
            trace.append(peak[n])
        times.append(t_edges[n + 1])
        trace.append(v[n])

    fig = Figure(figsize=(10, 6.2), layout="constrained")
    ax, ax_i = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    ax.plot(times, trace, color="tab:blue", lw=1.4, label="membrane potential V")
    ax.axhline(p.v_th, color="tab:red", ls="--", lw=1.2, label=f"threshold {p.v_th:g} mV")
    reset_label = (f"reset {p.v_reset:g} mV" if p.reset == "to_reset" else
                   f"v_reset {p.v_reset:g} mV (subtract mode: V - {p.v_th - p.v_reset:g} mV)")
    ax.axhline(p.v_reset, color="tab:green", ls=":", lw=1.5, label=reset_label)
    if p.v_rest != p.v_reset:
        ax.axhline(p.v_rest, color="grey", ls="-.", lw=0.8, label=f"rest {p.v_rest:g} mV")
    low = min(*trace, p.v_reset, p.v_rest)
    high = max(*trace, p.v_th)
    span = max(high - low, 1.0)
    mark_y = high + 0.08 * span
    if spike_steps:
        ax.plot([n * p.dt for n in spike_steps], [mark_y] * len(spike_steps), "v",
                color="tab:red", ms=7, label=f"spike s[n] ({len(spike_steps)}), at n·dt,\n"
                "the start of the crossing step")
    ax.set_ylim(low - 0.08 * span, high + 0.18 * span)
    ax.set_ylabel("membrane potential (mV)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    ax.grid(alpha=0.3)
    ax.set_title(f"LIF neuron, I = {source.describe()}: {len(spike_steps)} spikes in "
                 f"{steps * p.dt:g} ms ({1000 * len(spike_steps) / (steps * p.dt):.3g} Hz)\n"
                 f"R = {p.resistance:g} MOhm, tau_m = {p.tau_m:g} ms, dt = {p.dt:g} ms, "
                 f"t_ref = {p.t_ref:g} ms, reset {p.reset}", fontsize=11)
    ax_i.stairs(current, t_edges, color="tab:orange", lw=1.4, baseline=None)
    ax_i.axhline(p.rheobase, color="grey", ls=":", lw=1.0,
                 label=f"rheobase {p.rheobase:g} nA")
    ax_i.set_ylabel("current (nA)")
    ax_i.set_xlabel("time (ms)")
    ax_i.set_xlim(0, steps * p.dt)
    lo, hi = min(current.min(), p.rheobase), max(current.max(), p.rheobase)
    pad = max(0.1 * (hi - lo), 0.5)
    ax_i.set_ylim(lo - pad, hi + pad)
    ax_i.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    ax_i.grid(alpha=0.3)
    return fig


# -- f-I curve -------------------------------------------------------------------------------


def run_fi(args: argparse.Namespace, p: LIFParameters) -> int:
    currents = parse_fi(args.fi)
    steps = window_steps(args, p.dt, max(1, round(DEFAULT_FI_MS / p.dt)))
    out = _check_plot_path(args.plot) if args.plot else None
    spikes, _, _ = lif_simulate(torch.from_numpy(currents), p, steps=steps)
    rates, counts = [], []
    for j in range(len(currents)):
        at = torch.nonzero(spikes[:, j]).flatten()
        counts.append(len(at))
        mean_isi = (at[-1] - at[0]).item() / (len(at) - 1) if len(at) > 1 else math.inf
        rates.append(1000.0 / (mean_isi * p.dt))
    closed = p.reset == "to_reset"
    result = {
        "currents_na": currents.tolist(),
        "rate_hz": rates,
        "spike_count": counts,
        "closed_form_stepped_rate_hz": ([stepped_rate(i, p) for i in currents] if closed
                                        else None),
        "closed_form_rate_hz": [firing_rate(i, p) for i in currents] if closed else None,
        "rheobase_na": p.rheobase, "steps": steps, "dt_ms": p.dt, "window_ms": steps * p.dt,
        "neuron": _params_dict(p),
    }
    if out is not None:
        _save(fi_figure(p, currents, rates, steps), out)
        result["plot"] = str(out)
    if args.json:
        print(json.dumps(result))
        return 0
    say(False, f"neuron: {_params_line(p)}")
    say(False, f"f-I curve over {steps} steps = {steps * p.dt:g} ms; rate = 1000 / mean "
        "inter-spike interval (0 with fewer than two spikes)")
    say(False, f"{'I (nA)':>10} {'spikes':>7} {'rate (Hz)':>10}" +
        (f" {'stepped (Hz)':>13} {'f(I) (Hz)':>10}" if closed else ""))
    for j, i in enumerate(currents):
        line = f"{i:>10.4g} {counts[j]:>7} {rates[j]:>10.4g}"
        if closed:
            line += (f" {result['closed_form_stepped_rate_hz'][j]:>13.4g}"
                     f" {result['closed_form_rate_hz'][j]:>10.4g}")
        say(False, line)
    if out is not None:
        say(False, f"plot: {out}")
    return 0


def fi_figure(p: LIFParameters, currents: np.ndarray, rates: list[float], steps: int):
    """Rate (Hz) against current (nA): simulated points on the stepped and continuous forms."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.subplots()
    if p.reset == "to_reset":
        lo, hi = float(currents[0]), float(currents[-1])
        fine = np.linspace(lo, hi, max(2000, 20 * len(currents))) if hi > lo else currents
        ax.plot(fine, [firing_rate(i, p) for i in fine], color="tab:red", ls="--", lw=1.4,
                label="closed form, continuous time: 1 / (t_ref + tau_m ln((V_inf - v_reset) "
                "/ (V_inf - v_th)))")
        ax.plot(fine, [stepped_rate(i, p) for i in fine], color="tab:blue", lw=1.4,
                label=f"closed form, stepped: 1 / (inter-spike steps · dt), dt = {p.dt:g} ms")
    ax.plot(currents, rates, "o", color="black", ms=4, mfc="none",
            label=f"simulated: 1 / mean inter-spike interval over {steps * p.dt:g} ms")
    if currents[0] <= p.rheobase <= currents[-1]:
        ax.axvline(p.rheobase, color="grey", ls=":", lw=1.0,
                   label=f"rheobase {p.rheobase:g} nA")
    ax.set_xlabel("constant input current I (nA)")
    ax.set_ylabel("firing rate (Hz)")
    ax.set_title(f"f-I curve of the LIF neuron: R = {p.resistance:g} MOhm, tau_m = "
                 f"{p.tau_m:g} ms, v_th - v_rest = {p.v_th - p.v_rest:g} mV, t_ref = "
                 f"{p.t_ref:g} ms, reset {p.reset}", fontsize=11)
    ax.legend(loc="upper left", fontsize=9)
    ax.grid(alpha=0.3)
    ax.set_ylim(bottom=0)
    return fig
