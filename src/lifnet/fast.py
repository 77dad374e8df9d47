r"""Fast paths for LIF populations: a fused window and a closed-form encoding layer.

Both give the spikes of :func:`lifnet.neuron.lif_simulate` (the reference, which stays the
definition) and, to float tolerance, the gradients that backpropagation through time gives
through it; ``tests/test_fast.py`` holds them to that.

Fused window (:func:`lif_fused`). One :class:`torch.autograd.Function` over the whole
window. The forward is the reference's arithmetic, operation for operation, run without
autograd on ``(B, N)`` slices (so the potentials stay in cache); it keeps only the input
current and the spikes as ``bool``. The backward recomputes the potentials (one more
forward loop), evaluates the surrogate for every step at once, and runs the adjoint
recurrence backwards in time, one fused multiply-add per step::

    du[n] = g[n] * sg(u[n] - v_th) + beta * f[n] * du[n+1],     dL/dI[n] = (1 - beta) R du[n]

where ``u[n]`` is the potential before the reset, ``g[n] = dL/ds[n]`` and ``f[n] = dv[n+1] /
du[n]`` is ``1 - s[n]`` (``to_reset``) or ``1`` (``subtract``) with a detached reset, and
``1 - s[n] - (u[n] - v_reset) sg`` or ``1 - (v_th - v_reset) sg`` without.

Closed-form encoding (:func:`encode_constant`). Under a current held over the window, with
``to_reset``, a detached reset and no refractory period, a neuron's spike train is fixed by
two integers: the step of its first spike (from ``v_init``) and its inter-spike interval
(from ``v_reset``), both from ``V[k] = V_inf + (V0 - V_inf) beta^k``. The spike trains are
built from them for all steps at once, with no loop over time. A neuron whose potential
comes within float32 rounding of ``v_th`` at a deciding step (where the stepped float32
simulation could decide either way) is recomputed with the fused stepped forward, so the
spikes are exactly those of the reference. The backward is the exact BPTT gradient of the
reference, in closed form: with ``m[n]`` the steps since the last reset before step ``n``
(or since the start),

    dL/dI = R * sum_n g[n] * sg(u[n] - v_th) * (1 - beta^m[n]),
    u[n]  = V_inf + (V0 - V_inf) * beta^m[n],   V0 = v_init before the first spike, else v_reset.

Not covered, and run by the fused window instead: ``subtract`` reset or ``detach_reset=False``
in the encoding layer. Not covered by either, and run by the reference
:func:`~lifnet.neuron.lif_simulate`: a refractory period (``t_ref > 0``) and a recorded
membrane trace (``record_v``); :func:`covers` says which.

Device. Everything runs on the current's device (no CUDA is needed or assumed); the
closed form does its threshold arithmetic in float64 on ``(B, N)`` values, which every
CUDA device supports (Apple's MPS does not).
"""

from __future__ import annotations

import math

import torch

from .neuron import LIFParameters, lif_simulate
from .surrogate import SURROGATES

# Relative float32 rounding per step, with margin: a neuron whose exact potential is within
# ``_TOL_PER_STEP * (k + 2) * scale`` mV of threshold at a deciding step k is re-simulated.
_TOL_PER_STEP = 1e-6


def covers(p: LIFParameters, record_v: bool = False) -> bool:
    """Whether the fast paths handle this population (else the reference runs)."""
    return p.refractory_steps == 0 and not record_v


def _f32(x: float) -> float:
    """A Python float rounded to float32, as PyTorch rounds a scalar in a float32 op."""
    return float(torch.tensor(x, dtype=torch.float32))


# -- fused window ----------------------------------------------------------------------


def _forward_loop(current: torch.Tensor, p: LIFParameters, steps: int, constant: bool,
                  potentials: torch.Tensor | None = None) -> torch.Tensor:
    """The reference's arithmetic, operation for operation, without autograd.

    Returns the spikes ``(T, ...)`` as 0.0/1.0 in the current's dtype. With
    ``potentials`` (a ``(T, ...)`` buffer) the pre-reset potentials are written to it.
    Every step works on ``(...)`` slices written in place, which stay in cache on a CPU.
    """
    beta = p.beta
    drive = current * ((1.0 - beta) * p.resistance)       # same rounding as lif_step
    shape = current.shape if constant else current.shape[1:]
    spikes = torch.empty((steps, *shape), dtype=current.dtype, device=current.device)
    v = torch.full(shape, p.v_init, dtype=current.dtype, device=current.device)
    u = torch.empty_like(v)
    tmp = torch.empty_like(v)
    jump = p.v_th - p.v_reset
    for n in range(steps):
        out = u if potentials is None else potentials[n]
        torch.sub(v, p.v_rest, out=out)
        out.mul_(beta).add_(p.v_rest).add_(drive if constant else drive[n])
        s = spikes[n]
        torch.ge(out, p.v_th, out=s)                        # 1.0 where u >= v_th
        # the reference's reset, v = u - s * (u - v_reset) or u - s * jump, same rounding
        if p.reset == "to_reset":
            torch.sub(out, p.v_reset, out=tmp).mul_(s)
        else:
            torch.mul(s, jump, out=tmp)
        torch.sub(out, tmp, out=v)
    return spikes


def _backward_loop(current: torch.Tensor, spikes: torch.Tensor, grad: torch.Tensor,
                   p: LIFParameters, surrogate: str, width: float, detach_reset: bool,
                   constant: bool) -> torch.Tensor:
    """BPTT gradient with respect to the current (same shape as ``current``)."""
    steps = spikes.shape[0]
    beta = p.beta
    u = torch.empty(spikes.shape, dtype=grad.dtype, device=grad.device)
    _forward_loop(current, p, steps, constant, potentials=u)
    x = u.sub_(p.v_th)                                      # u[n] - v_th, in place
    sg = SURROGATES[surrogate](x, width)
    if detach_reset:
        bf = torch.mul(spikes, -beta).add_(beta) if p.reset == "to_reset" else None
    elif p.reset == "to_reset":
        # 1 - s - (u - v_reset) sg, with u - v_reset = x + (v_th - v_reset)
        bf = x.add_(p.v_th - p.v_reset).mul_(sg).add_(spikes).neg_().add_(1.0).mul_(beta)
    else:
        bf = (1.0 - (p.v_th - p.v_reset) * sg).mul_(beta)
    du = sg.mul_(grad)                                      # g[n] sg[n], then du in place
    for n in range(steps - 2, -1, -1):
        if bf is None:
            du[n].add_(du[n + 1], alpha=beta)
        else:
            du[n].addcmul_(bf[n], du[n + 1])
    scale = (1.0 - beta) * p.resistance
    return du.sum(0).mul_(scale) if constant else du.mul_(scale)


class _FusedLIF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, current, p, steps, constant, surrogate, width, detach_reset):
        spikes = _forward_loop(current, p, steps, constant)
        # The spikes are the output, which the next synapse keeps anyway: saving them costs
        # no memory. No potential is kept: the backward recomputes them.
        ctx.save_for_backward(current, spikes)
        ctx.args = (p, surrogate, width, detach_reset, constant)
        return spikes

    @staticmethod
    def backward(ctx, grad):
        current, spikes = ctx.saved_tensors
        p, surrogate, width, detach_reset, constant = ctx.args
        g = _backward_loop(current, spikes, grad.contiguous(), p, surrogate, width,
                           detach_reset, constant)
        return g, None, None, None, None, None, None


def lif_fused(current: torch.Tensor, p: LIFParameters, steps: int | None = None,
              surrogate: str = "fast_sigmoid", width: float = 1.0,
              detach_reset: bool = True) -> torch.Tensor:
    """Spikes ``(T, ...)`` of a population over a window, as :func:`lif_simulate` gives.

    Parameters
    ----------
    current : Tensor
        ``(T, ...)`` current in nA, or ``(...)`` held for ``steps`` steps.
    p : LIFParameters
        With ``t_ref > 0`` the reference :func:`lif_simulate` runs instead.
    steps : int, optional
        Window length when ``current`` is constant.
    surrogate, width, detach_reset
        As for :func:`lif_simulate`.
    """
    if p.refractory_steps:
        return lif_simulate(current, p, steps, surrogate=surrogate, width=width,
                            detach_reset=detach_reset)[0]
    constant = steps is not None
    if not constant:
        steps = current.shape[0]
    if not torch.is_grad_enabled() or not current.requires_grad:
        return _forward_loop(current.detach(), p, steps, constant)
    return _FusedLIF.apply(current, p, steps, constant, surrogate, width, detach_reset)


# -- closed-form encoding --------------------------------------------------------------


def _steps_to_threshold(v0: float, v_inf: torch.Tensor, p: LIFParameters, beta: float,
                        steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First ``k >= 1`` with ``V[k] >= v_th`` from ``v0``, ``V[k] = V_inf + (v0 - V_inf)
    beta^k`` (float64 math), and a mask of the neurons whose ``V`` comes too close to
    threshold at a deciding step for float32 stepping to agree surely.

    ``k`` (float64) is ``steps + 1`` where the threshold is not reached within the window.
    """
    th, never, lam = p.v_th, float(steps + 1), -math.log(beta)
    a = v_inf - th                                          # V_inf - v_th
    b = v_inf - v0                                          # V[k] - v_th = a - b beta^k
    if v0 >= th:
        # from above threshold: spikes at once, or (V decays below) never
        k = (a - b * beta >= 0).to(v_inf.dtype).mul_(1.0 - never).add_(never)
    else:
        # a > 0: ratio > 1; a <= 0 (never reaches): ratio <= 1, or inf when a = 0. The log
        # is in float32 (the float64 one is not vectorised on a CPU) of a clamped ratio (a
        # negative one takes a slow path): an error there moves k only where V[k] is within
        # float32 noise of v_th, which ``near`` flags.
        ratio = (b / a).clamp_(1e-30, 1e30).float()
        k = torch.log(ratio).double().div_(lam).ceil_()     # <= 0 where never reached
        k = torch.lerp(k, torch.full_like(k, never), (1.0 - k).clamp_(0.0, 1.0))
        k.clamp_(1.0, never)
    # deciding steps: 1, the crossing step kc and kc - 1 (all within the window)
    kc = k.clamp_max(steps)
    decay = torch.exp((kc * -lam).float()).double()         # beta^kc
    tol = (kc + 2.0).mul_(v_inf.abs().add_(abs(v0) + abs(th) + 1.0)).mul_(_TOL_PER_STEP)
    near = (a - b * beta).abs_() <= tol
    near |= torch.addcmul(a, b, decay, value=-1.0).abs_() <= tol
    near |= torch.addcmul(a, b, decay, value=-1.0 / beta).abs_() <= tol
    return k, near


class _ClosedFormEncoding(torch.autograd.Function):
    @staticmethod
    def forward(ctx, current, p, steps, surrogate, width):
        spikes = _encode_forward(current, p, steps)
        ctx.save_for_backward(current, spikes)      # spikes: the output, kept downstream
        ctx.args = (p, surrogate, width)
        return spikes

    @staticmethod
    def backward(ctx, grad):
        current, spikes = ctx.saved_tensors
        p, surrogate, width = ctx.args
        return (_encode_backward(current, spikes, grad, p, surrogate, width),
                None, None, None, None)


def _periodic_trains(first: torch.Tensor, isi: torch.Tensor, steps: int,
                     dtype: torch.dtype) -> torch.Tensor:
    """Spike trains ``(T, M)`` with spikes at ``first + j * isi`` (``(M,)`` int64 each),
    written by index (no loop over time; the work grows with the number of spikes)."""
    m = first.numel()
    out = torch.zeros(steps, m, dtype=dtype, device=first.device)
    fires = (first < steps).nonzero().squeeze(1)
    if fires.numel() == 0:
        return out
    f, q = first[fires], isi[fires]
    count = torch.div(steps - 1 - f, q, rounding_mode="floor") + 1
    owner = torch.repeat_interleave(torch.arange(fires.numel(), device=first.device), count)
    start = torch.cumsum(count, 0) - count
    j = torch.arange(owner.numel(), device=first.device) - start[owner]
    t = f[owner] + j * q[owner]
    out.view(-1)[t * m + fires[owner]] = 1.0
    return out


def _encode_forward(current: torch.Tensor, p: LIFParameters, steps: int) -> torch.Tensor:
    """Spikes ``(T, ...)`` in the current's dtype under a constant current ``(...)``."""
    current = current.detach()
    flat = current.reshape(-1)
    beta = _f32(p.beta)                                    # the factor float32 steps use
    # V_inf: the fixed point of the float32-rounded update
    v_inf = p.v_rest + flat.double() * (_f32((1.0 - p.beta) * p.resistance) / (1.0 - beta))
    k_first, near_first = _steps_to_threshold(p.v_init, v_inf, p, beta, steps)
    first = k_first.long() - 1                              # step of the first spike
    # the interval matters only where a spike happens before the last step
    again = (first < steps - 1).nonzero().squeeze(1)
    isi = torch.full_like(first, steps + 1)
    redo = near_first
    if again.numel():
        k_isi, near_isi = _steps_to_threshold(p.v_reset, v_inf[again], p, beta, steps)
        isi[again] = k_isi.long()
        redo[again] |= near_isi
    redo = redo.nonzero().squeeze(1)
    spikes = _periodic_trains(first, isi, steps, current.dtype)
    if redo.numel():
        spikes[:, redo] = _forward_loop(flat[redo], p, steps, constant=True)
    return spikes.view(steps, *current.shape)


def _encode_backward(current, spikes, grad, p, surrogate, width):
    """Exact BPTT gradient of the reference (to_reset, detached reset, no refractory
    period), from the closed-form potential; one pass over ``(...)`` slices."""
    beta = p.beta
    steps = spikes.shape[0]
    current = current.detach()
    v_inf = p.v_rest + p.resistance * current
    c0 = v_inf - p.v_th
    d_init = p.v_init - v_inf                       # V0 - V_inf before the first spike
    d = d_init.clone()
    seen = torch.zeros_like(current)                # 1.0 once the neuron has spiked
    decay = torch.ones_like(current)                # beta^m, m: steps since the last reset
    acc = torch.zeros_like(current)
    x = torch.empty_like(current)
    h = torch.empty_like(current)
    fn = SURROGATES[surrogate]
    scale = p.resistance
    if surrogate == "fast_sigmoid":                 # in place: 1 / (2w (1 + |x|/w)^2)
        scale /= 2.0 * width
    for n in range(steps):
        if n:
            s = spikes[n - 1]
            torch.maximum(decay, s, out=decay)      # a spike restarts the decay at 1
            if p.v_reset != p.v_init:
                torch.maximum(seen, s, out=seen)
                torch.add(d_init, seen, alpha=p.v_reset - p.v_init, out=d)
        decay.mul_(beta)
        torch.addcmul(c0, d, decay, out=x)          # u[n] - v_th
        if surrogate == "fast_sigmoid":
            torch.abs(x, out=h)
            if width != 1.0:
                h.mul_(1.0 / width)
            h.add_(1.0).reciprocal_().square_()
        else:
            h = fn(x, width)
        h.addcmul_(h, decay, value=-1.0)            # times du[n]/dI / R = 1 - beta^m
        acc.addcmul_(h, grad[n])
    return acc.mul_(scale)


def closed_form_covers(p: LIFParameters, detach_reset: bool) -> bool:
    """Whether :func:`encode_constant` uses the closed form (else the fused window)."""
    # beta must lie strictly inside (0, 1) for the logarithms of the closed form: a tau_m
    # so short (or so long) against dt that exp(-dt / tau_m) rounds to 0 (or 1) is stepped
    return (p.refractory_steps == 0 and p.reset == "to_reset" and detach_reset
            and 0.0 < p.beta < 1.0)


def encode_constant(current: torch.Tensor, p: LIFParameters, steps: int,
                    surrogate: str = "fast_sigmoid", width: float = 1.0,
                    detach_reset: bool = True) -> torch.Tensor:
    """Spikes ``(T, ...)`` of neurons under a current ``(...)`` nA held for ``steps`` steps.

    The closed form where :func:`closed_form_covers` says so; otherwise the fused window
    (or, with ``t_ref > 0``, the reference).
    """
    if not closed_form_covers(p, detach_reset):
        return lif_fused(current, p, steps, surrogate, width, detach_reset)
    if not torch.is_grad_enabled() or not current.requires_grad:
        return _encode_forward(current, p, steps)
    return _ClosedFormEncoding.apply(current, p, steps, surrogate, width)
