r"""The leaky integrate-and-fire neuron, in biophysical units.

Membrane equation (continuous time)::

    tau_m * dV/dt = -(V - v_rest) + R * I(t),        tau_m = R * C

Units, everywhere in lifnet's public interface: potentials in mV, time in ms, resistance in
MOhm, capacitance in nF, current in nA. Then ``R * I`` is in mV and ``R * C`` in ms
(1 MOhm * 1 nF = 1 ms).

Discretisation. The current is held constant over each step of length ``dt``; the membrane
equation is then solved exactly (exponential integrator)::

    beta    = exp(-dt / tau_m)
    V[n+1]  = v_rest + (V[n] - v_rest) * beta + (1 - beta) * R * I[n]
    s[n]    = 1 if V[n+1] >= v_th else 0

Order within step ``n``: integrate, compare, spike, reset, then the refractory clamp. A
spike ``s[n]`` is emitted at time ``n * dt`` (the start of the step in which the threshold
was crossed; Brian2 reports the same time). Reset modes:

- ``"to_reset"``: ``V <- v_reset``;
- ``"subtract"``: ``V <- V - (v_th - v_reset)``.

Refractory period: after a spike in step ``n`` the membrane is held at its post-reset value,
and cannot spike, for the next ``refractory_steps = ceil(t_ref / dt)`` steps (``n + 1`` to
``n + refractory_steps``); it integrates again from step ``n + refractory_steps + 1``. The
count is rounded up, so the membrane always sits at its reset value for at least ``t_ref``
(a ``t_ref`` within 1e-9 of a multiple of ``dt`` counts as that multiple, so 0.3 ms at
``dt = 0.1`` is 3 steps, and any ``0 < t_ref <= dt`` is one step). Under a constant current
the inter-spike interval is then ``k + refractory_steps`` steps, ``k`` the steps from reset
to threshold, and the stepped period exceeds the continuous one by less than
``dt + (refractory_steps * dt - t_ref)``: never shorter, whatever ``t_ref`` and ``dt``.

This is where lifnet and Brian2 part, and lifnet's count is the deliberate choice. Brian2
(``refractory=t_ref``) holds while ``timestep(t - lastspike) < timestep(t_ref)``, counting
from the spike's reported time ``n * dt`` and rounding ``t_ref / dt`` down; since the reset
itself only happens at the end of step ``n``, the membrane is held ``floor(t_ref / dt) - 1``
steps: one ``dt`` of refractoriness holds nothing, 1.5 ms at ``dt = 1`` holds nothing
either, and the stepped period falls short of the continuous one by up to ``2 dt`` once
``t_ref >= dt`` but not for ``t_ref = 0`` (its error changes sign with ``t_ref``). lifnet's
hold is Brian2's ``refractory = (ceil(t_ref / dt) + 1) * dt``, and Brian2's
``refractory=t_ref`` is lifnet's ``t_ref - dt`` for a multiple of ``dt``;
``tests/test_against_brian2.py`` holds the two simulators to the first mapping step for step.

Constant current. With ``V_inf = v_rest + R * I`` the solution from ``V0`` is
``V(t) = V_inf + (V0 - V_inf) * exp(-t / tau_m)``, exact at every step, so the first spike
step, the inter-spike interval, the spike count in ``T`` steps and the firing rate have
closed forms (:func:`first_spike_step`, :func:`interspike_steps`, :func:`spike_count`,
:func:`firing_rate`). The continuous-time rate is::

    f(I) = 1 / (t_ref + tau_m * ln((V_inf - v_reset) / (V_inf - v_th)))   if V_inf > v_th

Every tensor function here works on any shape (one neuron, or a ``(batch, neurons)``
tensor); sequences are time-first, ``(T, ...)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal, NamedTuple

import torch

from .errors import bad_value
from .surrogate import SurrogateName, spike_fn

ResetMode = Literal["to_reset", "subtract"]
RESET_MODES = ("to_reset", "subtract")

# A t_ref this close to a multiple of dt counts as that multiple.
_ROUND_TOL = 1e-9


@dataclass(frozen=True)
class LIFParameters:
    """Parameters of one population of LIF neurons, in biophysical units.

    Give ``capacitance`` or ``tau_m`` (or both, if they agree); the other is derived from
    ``tau_m = resistance * capacitance``. With neither, ``tau_m`` is 10 ms.

    Parameters
    ----------
    resistance : float
        Membrane resistance R in MOhm (> 0).
    capacitance : float, optional
        Membrane capacitance C in nF (> 0).
    tau_m : float, optional
        Membrane time constant in ms (> 0).
    v_rest : float
        Resting potential in mV.
    v_reset : float, optional
        Reset potential in mV; defaults to ``v_rest``.
    v_th : float
        Threshold in mV; must exceed ``v_reset``, and ``v_rest`` unless
        ``spontaneous=True``.
    v_init : float, optional
        Potential at the start of every window, in mV; defaults to ``v_rest``.
    t_ref : float
        Refractory period in ms (>= 0).
    dt : float
        Time step in ms (> 0).
    reset : {"to_reset", "subtract"}
        What a spike does to the membrane (see the module docstring).
    spontaneous : bool
        Allow ``v_th <= v_rest`` (a neuron that fires with no input).
    """

    resistance: float = 1.0
    capacitance: float | None = None
    tau_m: float | None = None
    v_rest: float = -65.0
    v_reset: float | None = None
    v_th: float = -50.0
    v_init: float | None = None
    t_ref: float = 0.0
    dt: float = 1.0
    reset: ResetMode = "to_reset"
    spontaneous: bool = False

    def __post_init__(self) -> None:
        owner = "neuron"
        for name in ("resistance", "capacitance", "tau_m", "v_rest", "v_reset", "v_th",
                     "v_init", "t_ref", "dt"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad_value(name, value, "a number", owner)
            if not math.isfinite(value):
                raise bad_value(name, value, "a finite number", owner)
            object.__setattr__(self, name, float(value))
        if self.resistance <= 0:
            raise bad_value("resistance", self.resistance, "> 0 MOhm", owner)
        if self.dt <= 0:
            raise bad_value("dt", self.dt, "> 0 ms", owner)
        if self.t_ref < 0:
            raise bad_value("t_ref", self.t_ref, ">= 0 ms", owner)
        if self.capacitance is not None and self.capacitance <= 0:
            raise bad_value("capacitance", self.capacitance, "> 0 nF", owner)
        if self.tau_m is not None and self.tau_m <= 0:
            raise bad_value("tau_m", self.tau_m, "> 0 ms", owner)
        if self.capacitance is None and self.tau_m is None:
            object.__setattr__(self, "tau_m", 10.0)
        if self.tau_m is None:
            object.__setattr__(self, "tau_m", self.resistance * self.capacitance)
        elif self.capacitance is None:
            object.__setattr__(self, "capacitance", self.tau_m / self.resistance)
        elif not math.isclose(self.tau_m, self.resistance * self.capacitance, rel_tol=1e-9):
            raise bad_value(
                "tau_m", self.tau_m,
                f"resistance * capacitance = {self.resistance * self.capacitance!r} ms "
                "(give capacitance or tau_m, not two that disagree)", owner)
        if self.v_reset is None:
            object.__setattr__(self, "v_reset", self.v_rest)
        if self.v_init is None:
            object.__setattr__(self, "v_init", self.v_rest)
        if self.reset not in RESET_MODES:
            raise bad_value("reset", self.reset, " or ".join(map(repr, RESET_MODES)), owner)
        if self.v_th <= self.v_reset:
            raise bad_value("v_th", self.v_th, f"> v_reset = {self.v_reset!r} mV", owner)
        if self.v_th <= self.v_rest and not self.spontaneous:
            raise bad_value(
                "v_th", self.v_th,
                f"> v_rest = {self.v_rest!r} mV (or spontaneous=True for a neuron that "
                "fires with no input)", owner)

    @property
    def beta(self) -> float:
        """Decay of ``V - v_rest`` over one step: ``exp(-dt / tau_m)``."""
        return math.exp(-self.dt / self.tau_m)

    @property
    def refractory_steps(self) -> int:
        """Steps the membrane is held after a spike: ``ceil(t_ref / dt)``."""
        return max(0, math.ceil(self.t_ref / self.dt - _ROUND_TOL))

    @property
    def rheobase(self) -> float:
        """Smallest constant current (nA) whose steady potential reaches ``v_th``."""
        return (self.v_th - self.v_rest) / self.resistance

    def replace(self, **changes) -> LIFParameters:
        """A copy with some fields changed (derived fields are derived again)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        if "tau_m" in changes and "capacitance" not in changes:
            values["capacitance"] = None
        elif "capacitance" in changes and "tau_m" not in changes:
            values["tau_m"] = None
        elif "resistance" in changes:
            values["capacitance"] = None
        values.update(changes)
        return LIFParameters(**values)


class LIFState(NamedTuple):
    """State of a population between steps.

    ``v`` is the membrane potential in mV; ``refractory`` the number of steps each neuron
    is still held after its last spike (``None`` when ``t_ref`` is 0).
    """

    v: torch.Tensor
    refractory: torch.Tensor | None = None


def initial_state(p: LIFParameters, like: torch.Tensor) -> LIFState:
    """The state at the start of a window: every neuron at ``v_init``, none refractory."""
    v = torch.full_like(like, p.v_init)
    refractory = torch.zeros_like(like, dtype=torch.int32) if p.refractory_steps else None
    return LIFState(v, refractory)


def lif_step(
    current: torch.Tensor,
    state: LIFState,
    p: LIFParameters,
    surrogate: SurrogateName = "fast_sigmoid",
    width: float = 1.0,
    detach_reset: bool = True,
) -> tuple[torch.Tensor, LIFState]:
    """Advance a population by one step of ``p.dt``.

    Parameters
    ----------
    current : Tensor, any shape
        Input current in nA, held over the step.
    state : LIFState
        Potentials (mV) before the step, same shape as ``current``.
    p : LIFParameters
    surrogate, width
        Surrogate derivative of the spike and its width in mV (see :mod:`lifnet.surrogate`).
    detach_reset : bool
        Treat the reset as a constant in the backward pass (as snnTorch and Norse do by
        default); the forward pass is the same either way.

    Returns
    -------
    spikes : Tensor, same shape, 0.0 or 1.0
    state : LIFState after the step
    """
    beta = p.beta
    # integrate: exact solution for a current held over the step
    v = p.v_rest + (state.v - p.v_rest) * beta + (1.0 - beta) * p.resistance * current

    # compare and spike
    spikes = spike_fn(v - p.v_th, surrogate, width)

    # reset
    gate = spikes.detach() if detach_reset else spikes
    if p.reset == "to_reset":
        # not v - gate * (v - v_reset): at large potentials that cancels to the wrong value
        v = gate * p.v_reset + (1.0 - gate) * v
    else:
        v = v - gate * (p.v_th - p.v_reset)

    # refractory clamp: a held neuron keeps its post-reset potential and cannot spike
    refractory = state.refractory
    if refractory is None and p.refractory_steps:
        # a state made by hand, without a counter: nobody is held yet
        refractory = torch.zeros_like(v, dtype=torch.int32)
    if refractory is not None:
        held = refractory > 0
        v = torch.where(held, state.v, v)
        spikes = torch.where(held, torch.zeros_like(spikes), spikes)
        refractory = torch.where(
            spikes.detach() > 0,
            torch.full_like(refractory, p.refractory_steps),
            (refractory - 1).clamp_min(0),
        )
    return spikes, LIFState(v, refractory)


def lif_simulate(
    current: torch.Tensor,
    p: LIFParameters,
    steps: int | None = None,
    state: LIFState | None = None,
    surrogate: SurrogateName = "fast_sigmoid",
    width: float = 1.0,
    detach_reset: bool = True,
    record_v: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, LIFState]:
    """Run a population over a window, step by step.

    Parameters
    ----------
    current : Tensor
        ``(T, ...)`` current in nA for every step, or ``(...)`` held for ``steps`` steps.
    steps : int, optional
        Window length in steps when ``current`` is constant.
    state : LIFState, optional
        Start state; by default every neuron at ``v_init``.
    record_v : bool
        Also return the potential after every step (after reset), ``(T, ...)`` in mV.

    Returns
    -------
    spikes : ``(T, ...)``; v_trace : ``(T, ...)`` or None; final state.
    """
    constant = steps is not None
    if constant:
        if steps < 1:
            raise bad_value("steps", steps, ">= 1")
        shape_like = current
    else:
        steps = current.shape[0]
        shape_like = current[0]
    if state is None:
        state = initial_state(p, shape_like)
    spikes, trace = [], []
    for n in range(steps):
        s, state = lif_step(current if constant else current[n], state, p, surrogate, width,
                            detach_reset)
        spikes.append(s)
        if record_v:
            trace.append(state.v)
    return torch.stack(spikes), (torch.stack(trace) if record_v else None), state


# -- closed form for a constant current -------------------------------------------------


def _steps_to_reach(v0: float, v_inf: float, v_th: float, p: LIFParameters) -> float:
    """Smallest k >= 1 with ``V[k] >= v_th`` starting from ``v0``, or inf if never."""
    if v0 >= v_th:
        # V moves towards v_inf; from above threshold it stays above for one step at least
        # unless it decays below threshold within that step.
        v1 = v_inf + (v0 - v_inf) * p.beta
        if v1 >= v_th:
            return 1.0
    if v_inf <= v_th:
        return math.inf
    ratio = (v_inf - v0) / (v_inf - v_th)
    return float(max(1, math.ceil(math.log(ratio) * p.tau_m / p.dt - _ROUND_TOL)))


def first_spike_step(current: float, p: LIFParameters) -> int | None:
    """Step index ``n`` of the first spike under a constant current, or None if none.

    Starts from ``v_init``. Valid for both reset modes (they differ only after a spike).
    """
    k = _steps_to_reach(p.v_init, p.v_rest + p.resistance * current, p.v_th, p)
    return None if math.isinf(k) else int(k) - 1


def interspike_steps(current: float, p: LIFParameters) -> int | None:
    """Steps between consecutive spikes under a constant current (``"to_reset"`` mode).

    Includes the refractory hold. None when the neuron fires at most once.
    """
    if p.reset != "to_reset":
        raise bad_value("reset", p.reset, "'to_reset' (the closed form assumes it)")
    k = _steps_to_reach(p.v_reset, p.v_rest + p.resistance * current, p.v_th, p)
    return None if math.isinf(k) else int(k) + p.refractory_steps


def spike_count(current: float, p: LIFParameters, steps: int) -> int:
    """Number of spikes in a window of ``steps`` steps under a constant current."""
    first = first_spike_step(current, p)
    if first is None or first >= steps:
        return 0
    isi = interspike_steps(current, p)
    if isi is None:
        return 1
    return 1 + (steps - 1 - first) // isi


def firing_rate(current: float, p: LIFParameters) -> float:
    """Continuous-time firing rate in Hz for a constant current (0 below rheobase)."""
    v_inf = p.v_rest + p.resistance * current
    if v_inf <= p.v_th:
        return 0.0
    period_ms = p.t_ref + p.tau_m * math.log((v_inf - p.v_reset) / (v_inf - p.v_th))
    return 1000.0 / period_ms


def stepped_rate(current: float, p: LIFParameters) -> float:
    """Firing rate in Hz of the discrete-time neuron in its periodic regime."""
    isi = interspike_steps(current, p)
    return 0.0 if isi is None else 1000.0 / (isi * p.dt)
