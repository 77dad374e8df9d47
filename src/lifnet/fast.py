r"""Fast paths for LIF populations: a fused window, a closed-form encoding layer, kernels.

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

where ``u[n]`` (``= V_inf + (V0 - V_inf) beta^m[n]``) is stepped again in the backward with
the reference's float operations, so that the surrogate sees the potentials the reference
saw (the exact potential and the float32-stepped one part by up to a few 1e-3 mV when dt <<
tau_m, which the surrogate notices), and ``1 - beta^m`` has its own recurrence.

Not covered, and run by the fused window instead: ``subtract`` reset or ``detach_reset=False``
in the encoding layer. Not covered by either, and run by the reference
:func:`~lifnet.neuron.lif_simulate`: a refractory period (``t_ref > 0``) and a recorded
membrane trace (``record_v``); :func:`covers` says which.

CPU kernels (:mod:`lifnet._kernels`, numba). On a CPU the loops above run compiled, one
kernel per layer instead of a few PyTorch operations per step, chosen by measurement
(benchmarks/README.md):

- the fused window (forward and backward), with the reference's float operations one by
  one, so the spikes are the same bit for bit;
- the encoding population fused with the dense output synapses (:func:`encode_dense`,
  used by PatchNet when there is no hidden layer): the neurons are stepped and their
  spikes summed into the output current at once, and the backward combines the
  closed-form gradient above with the synapses' own, so the ``(T, B, N)`` spike trains
  and their gradient never exist; the encoding spikes are the reference's bit for bit,
  the output currents ``F.linear``'s to rounding (the sum runs in another order);
- the patch synapses (:func:`patch_currents`), the same operations in the same order as
  :class:`~lifnet.layers.PatchEncoding`'s PyTorch path.

On a CPU, stepping compiled is faster than the closed form's trains (whose logarithms and
index writes cost more than a few multiply-adds per step), so :func:`encode_constant`
steps there; the closed form serves where no kernel runs (a GPU, or numba missing).

Device. Everything runs on the current's device (no CUDA is needed or assumed); the
closed form does its threshold arithmetic in float64 on ``(B, N)`` values, which every
CUDA device supports (Apple's MPS does not).
"""

from __future__ import annotations

import contextlib
import math
import warnings

import torch

from .errors import bad_value
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


def _drive(current: torch.Tensor, p: LIFParameters) -> torch.Tensor:
    """``(1 - beta) R I``, rounded as :func:`lifnet.neuron.lif_step` rounds it."""
    return current * ((1.0 - p.beta) * p.resistance)


# -- fused window ----------------------------------------------------------------------


def _forward_loop(current: torch.Tensor, p: LIFParameters, steps: int, constant: bool,
                  potentials: torch.Tensor | None = None) -> torch.Tensor:
    """The reference's arithmetic, operation for operation, without autograd.

    Returns the spikes ``(T, ...)`` as 0.0/1.0 in the current's dtype. With
    ``potentials`` (a ``(T, ...)`` buffer) the pre-reset potentials are written to it.
    Every step works on ``(...)`` slices written in place, which stay in cache on a CPU;
    on a CPU with the kernels (:mod:`lifnet._kernels`) one kernel runs the same operations.
    """
    if _kernel_ready(current):
        return _forward_kernel(current, p, steps, constant, potentials)
    beta = p.beta
    drive = _drive(current, p)
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
        # the reference's reset, v = s v_reset + (1 - s) u or u - s jump, same rounding
        if p.reset == "to_reset":
            torch.mul(s, p.v_reset, out=tmp)
            torch.mul(s, -1.0, out=v).add_(1.0).mul_(out).add_(tmp)
        else:
            torch.mul(s, jump, out=tmp)
            torch.sub(out, tmp, out=v)
    return spikes


def _backward_loop(current: torch.Tensor, spikes: torch.Tensor, grad: torch.Tensor,
                   p: LIFParameters, surrogate: str, width: float, detach_reset: bool,
                   constant: bool) -> torch.Tensor:
    """BPTT gradient with respect to the current (same shape as ``current``)."""
    steps = spikes.shape[0]
    if _kernel_ready(current, surrogate):
        return _backward_kernel(current, spikes, grad, p, surrogate, width, detach_reset,
                                constant)
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


_CHUNK = 512          # columns per kernel task: (T, 512) slices stay in cache


def _kernel_ready(current: torch.Tensor, surrogate: str = "fast_sigmoid") -> bool:
    """Whether the numba kernels can take this tensor (a CPU float32/float64 one)."""
    return (current.device.type == "cpu" and current.dtype in (torch.float32, torch.float64)
            and _load_kernels() is not None and surrogate in _load_kernels().SURROGATE_KINDS)


def _forward_kernel(current, p, steps, constant, potentials):
    kern = _load_kernels()
    drive = _drive(current, p)
    shape = current.shape if constant else current.shape[1:]
    drive = drive.reshape(1 if constant else steps, -1).contiguous()
    spikes = torch.empty((steps, drive.shape[1]), dtype=current.dtype)
    keep = potentials is not None
    pot = potentials.view(steps, -1) if keep else spikes
    with _kernel_threads():
        kern.lif_window_forward(drive.numpy(), constant, steps, p.beta, p.v_rest, p.v_th,
                                p.v_reset, p.v_init, p.reset == "to_reset", _CHUNK,
                                spikes.numpy(), pot.numpy(), keep)
    return spikes.view(steps, *shape)


def _backward_kernel(current, spikes, grad, p, surrogate, width, detach_reset, constant):
    kern = _load_kernels()
    steps = spikes.shape[0]
    pot = torch.empty((steps, spikes[0].numel()), dtype=current.dtype)
    flat_spikes = spikes.reshape(steps, -1).contiguous()
    _forward_kernel(current, p, steps, constant, pot)
    out = torch.empty((1 if constant else steps, pot.shape[1]), dtype=current.dtype)
    g_flat = grad.reshape(steps, -1).contiguous()
    with _kernel_threads():
        kern.lif_window_backward(pot.numpy(), flat_spikes.numpy(), g_flat.numpy(), p.beta,
                                 p.v_th, p.v_reset, p.reset == "to_reset", detach_reset,
                                 kern.SURROGATE_KINDS.index(surrogate), float(width),
                                 (1.0 - p.beta) * p.resistance, constant, _CHUNK, out.numpy())
    return out.view(current.shape)


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
    if constant and steps < 1:
        raise bad_value("steps", steps, ">= 1")
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


def _train_parameters(current: torch.Tensor, p: LIFParameters, steps: int
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The periodic trains under a constant current: ``first`` (step of the first spike,
    ``>= steps`` for none) and ``isi`` (the interval, ``>= steps`` where no second spike
    falls in the window), both int64 of the current's flat size, and the flat indices of
    the neurons too near threshold at a deciding step, which must be stepped instead."""
    flat = current.detach().reshape(-1)
    # the factors as the stepped update rounds them (float32), or not (float64)
    single = flat.dtype != torch.float64
    beta = _f32(p.beta) if single else p.beta
    gain = _f32((1.0 - p.beta) * p.resistance) if single else (1.0 - p.beta) * p.resistance
    v_inf = p.v_rest + flat.double() * (gain / (1.0 - beta))     # the update's fixed point
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
    return first, isi, redo.nonzero().squeeze(1)


def _encode_forward(current: torch.Tensor, p: LIFParameters, steps: int) -> torch.Tensor:
    """Spikes ``(T, ...)`` in the current's dtype under a constant current ``(...)``."""
    current = current.detach()
    first, isi, redo = _train_parameters(current, p, steps)
    spikes = _periodic_trains(first, isi, steps, current.dtype)
    if redo.numel():
        spikes[:, redo] = _forward_loop(current.reshape(-1)[redo], p, steps, constant=True)
    return spikes.view(steps, *current.shape)


def _encode_backward(current, spikes, grad, p, surrogate, width):
    """Exact BPTT gradient of the reference (to_reset, detached reset, no refractory
    period): ``R sum_n g[n] sg(u[n] - v_th) (1 - beta^m[n])``, with ``u[n]`` the potential
    stepped again with the reference's operations (so the surrogate sees the potentials the
    reference saw) and ``1 - beta^m`` by its own recurrence, ``1 - beta^(m+1) = (1 - beta)
    + beta (1 - beta^m)`` (as ``1 - beta^m`` it would cancel when dt << tau_m). One pass
    over ``(...)`` slices; nothing of size ``T`` is kept."""
    beta = p.beta
    steps = spikes.shape[0]
    current = current.detach()
    drive = _drive(current, p)
    v = torch.full_like(current, p.v_init)
    u = torch.empty_like(current)
    tmp = torch.empty_like(current)
    x = torch.empty_like(current)
    h = torch.empty_like(current)
    rise = torch.zeros_like(current)                # 1 - beta^m, m: steps since the reset
    acc = torch.zeros_like(current)
    fn = SURROGATES[surrogate]
    scale = p.resistance
    if surrogate == "fast_sigmoid":                 # in place: 1 / (2w (1 + |x|/w)^2)
        scale /= 2.0 * width
    for n in range(steps):
        torch.sub(v, p.v_rest, out=u)
        u.mul_(beta).add_(p.v_rest).add_(drive)     # the potential before the reset
        torch.sub(u, p.v_th, out=x)
        rise.mul_(beta).add_(1.0 - beta)
        if surrogate == "fast_sigmoid":
            torch.abs(x, out=h)
            if width != 1.0:
                h.mul_(1.0 / width)
            h.add_(1.0).reciprocal_().square_()
        else:
            h = fn(x, width)
        h.mul_(rise)                                # times du[n]/dI / R = 1 - beta^m
        acc.addcmul_(h, grad[n])
        s = spikes[n]                               # the reset, as lif_step does it
        torch.mul(s, p.v_reset, out=tmp)
        torch.mul(s, -1.0, out=v).add_(1.0).mul_(u).add_(tmp)
        rise.addcmul_(rise, s, value=-1.0)          # a spike starts the rise again at 0
    return acc.mul_(scale)


def closed_form_covers(p: LIFParameters, detach_reset: bool) -> bool:
    """Whether :func:`encode_constant` uses the closed form (else the fused window)."""
    # beta must lie strictly inside (0, 1), in float32 too, for the logarithms of the
    # closed form: a tau_m so short (or so long) against dt that exp(-dt / tau_m) rounds
    # to 0 (or 1) is stepped
    return (p.refractory_steps == 0 and p.reset == "to_reset" and detach_reset
            and 0.0 < p.beta < 1.0 and 0.0 < _f32(p.beta) < 1.0)


def encode_constant(current: torch.Tensor, p: LIFParameters, steps: int,
                    surrogate: str = "fast_sigmoid", width: float = 1.0,
                    detach_reset: bool = True) -> torch.Tensor:
    """Spikes ``(T, ...)`` of neurons under a current ``(...)`` nA held for ``steps`` steps.

    The closed form where :func:`closed_form_covers` says so and no CPU kernel can take
    the current (on a GPU, say); otherwise the fused window (or, with ``t_ref > 0``, the
    reference).
    """
    if (not closed_form_covers(p, detach_reset) or _kernel_ready(current, surrogate)
            or current.dtype not in (torch.float32, torch.float64)):
        # on a CPU the compiled stepped window is faster than the closed form (measured:
        # benchmarks/README.md); both give the reference's spikes. Half-precision currents
        # are stepped too: the closed form's rounding margins are float32's
        return lif_fused(current, p, steps, surrogate, width, detach_reset)
    if not torch.is_grad_enabled() or not current.requires_grad:
        return _encode_forward(current, p, steps)
    return _ClosedFormEncoding.apply(current, p, steps, surrogate, width)


# -- encoding population fused with dense synapses (CPU) -------------------------------


def _load_kernels():
    """The numba kernels, or None where numba cannot be imported (then the PyTorch paths
    run: the same spikes, slower) or where they are switched off (``_STATE``, tests)."""
    if _STATE["kernels"] is None:
        try:
            from . import _kernels
            _STATE["kernels"] = _kernels
        except Exception as exc:     # numba missing or broken (say, no cache folder it can use)
            warnings.warn(f"lifnet's CPU kernels are unavailable ({type(exc).__name__}: "
                          f"{exc}); the PyTorch fast paths run instead (the same spikes, "
                          "slower)", RuntimeWarning, stacklevel=2)
            _STATE["kernels"] = False
    return _STATE["kernels"] or None


_STATE: dict = {"kernels": None}     # the kernels module once imported; False: not used


@contextlib.contextmanager
def _kernel_threads():
    """Run the kernels inside on as many threads as PyTorch uses (``--threads``); yields
    that number. numba's OpenMP layer, when it starts, sets the OpenMP thread count that
    PyTorch reads as well: PyTorch gets its own back on the way out."""
    import numba
    want = torch.get_num_threads()
    n = max(1, min(want, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != want:
            torch.set_num_threads(want)


def encode_dense_covers(current: torch.Tensor, p: LIFParameters, detach_reset: bool,
                        surrogate: str) -> bool:
    """Whether :func:`encode_dense` fuses (else it runs the two layers one after the other)."""
    return closed_form_covers(p, detach_reset) and _kernel_ready(current, surrogate)


def _encode_dense_forward(current, weight, bias, p, steps):
    """Output current ``(T, B, K)`` of :func:`encode_dense` (CPU kernels)."""
    kern = _load_kernels()
    cur = current.detach()
    w = weight.detach().to(cur.dtype)
    out = torch.zeros((steps, cur.shape[0], w.shape[0]), dtype=cur.dtype)
    if bias is not None:
        out += bias.detach().to(cur.dtype)
    drive, w = _drive(cur, p).contiguous(), w.contiguous()
    with _kernel_threads():
        kern.encode_dense_forward(drive.numpy(), steps, p.beta, p.v_rest, p.v_th, p.v_reset,
                                  p.v_init, w.numpy(), out.numpy())
    return out


class _EncodeDense(torch.autograd.Function):
    @staticmethod
    def forward(ctx, current, weight, bias, p, steps, surrogate, width):
        ctx.save_for_backward(current.detach(), weight.detach())
        ctx.args = (p, surrogate, width, bias is not None)
        return _encode_dense_forward(current, weight, bias, p, steps)

    @staticmethod
    def backward(ctx, grad):
        kern = _load_kernels()
        cur, weight = ctx.saved_tensors
        p, surrogate, width, has_bias = ctx.args
        grad = grad.to(cur.dtype).contiguous()
        w = weight.to(cur.dtype).contiguous()
        drive = _drive(cur, p).contiguous()
        g_cur = torch.empty_like(cur)
        with _kernel_threads() as chunks:
            parts = torch.zeros((chunks, w.shape[0], cur.shape[1]), dtype=cur.dtype)
            kern.encode_dense_backward(drive.numpy(), p.beta, p.v_rest, p.v_th, p.v_reset,
                                       p.v_init, grad.numpy(), w.numpy(),
                                       kern.SURROGATE_KINDS.index(surrogate), float(width),
                                       g_cur.numpy(), parts.numpy())
        g_w = parts.sum(0).to(weight.dtype)
        g_bias = grad.sum((0, 1)) if has_bias else None
        return (g_cur.mul_(p.resistance), g_w, g_bias, None, None, None, None)


def encode_dense(current: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 p: LIFParameters, steps: int, surrogate: str = "fast_sigmoid",
                 width: float = 1.0, detach_reset: bool = True) -> torch.Tensor:
    """Output current ``(T, B, K)`` of dense synapses ``(K, N)`` fed by an encoding
    population under a constant current ``(B, N)``: ``F.linear(encode_constant(current,
    ...), weight, bias)``, without building the ``(T, B, N)`` spike trains.

    One compiled loop per batch row (:mod:`lifnet._kernels`, run in parallel over rows):
    forward, the neurons are stepped with the reference's float operations (so the spikes
    are exactly :func:`~lifnet.neuron.lif_simulate`'s) and the weight columns of those
    that spike are added to the output current of that step. Backward, the neurons are
    stepped again and the gradient into the spikes, ``grad @ weight``, meets the
    closed-form encoding gradient, ``dL/dI[b, n] = R sum_k W[k, n] sum_t grad[t, b, k]
    sg(u[t] - v_th) (1 - beta^m[t])``; the weight gradient sums ``grad`` at the spikes.
    Neither the spike trains nor their gradient exist at any time: the memory is that of
    the currents. Where :func:`encode_dense_covers` is false (not a CPU, no kernels, or a
    neuron the closed form does not cover), the two layers run one after the other.
    """
    if not encode_dense_covers(current, p, detach_reset, surrogate):
        spikes = encode_constant(current, p, steps, surrogate, width, detach_reset)
        return torch.nn.functional.linear(spikes, weight, bias)
    if torch.is_grad_enabled() and (current.requires_grad or weight.requires_grad
                                    or (bias is not None and bias.requires_grad)):
        return _EncodeDense.apply(current, weight, bias, p, steps, surrogate, width)
    with torch.no_grad():
        return _encode_dense_forward(current, weight, bias, p, steps)


# -- locally connected patch synapses (CPU) ---------------------------------------------


def patch_kernel_covers(images: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`patch_currents` can take these images (CPU, float, the weights'
    dtype, no gradient wanted for the pixels). Under autocast it computes in the weights'
    dtype all the same."""
    return (_kernel_ready(images) and images.dtype == weight.dtype
            and not (images.requires_grad and torch.is_grad_enabled()))


class _PatchCurrents(torch.autograd.Function):
    @staticmethod
    def forward(ctx, images, weight, bias, gain, patch, stride, grid):
        kern = _load_kernels()
        gh, gw = grid
        n_patch, chans, k2 = weight.shape
        x = images.detach().contiguous()
        w = weight.detach().permute(2, 1, 0).reshape(k2, chans, gh, gw).contiguous()
        out = torch.empty((x.shape[0], gh, gw, chans), dtype=x.dtype)
        b = bias.detach().reshape(gh, gw, chans).contiguous()
        with _kernel_threads():
            kern.patch_forward(x.numpy(), w.numpy(), b.numpy(), gain, patch, stride,
                               out.numpy())
        ctx.save_for_backward(x)
        ctx.args = (gain, patch, stride, grid, weight.shape)
        return out.view(x.shape[0], n_patch * chans)

    @staticmethod
    def backward(ctx, grad):
        kern = _load_kernels()
        (x,) = ctx.saved_tensors
        gain, patch, stride, (gh, gw), (n_patch, chans, k2) = ctx.args
        g = grad.to(x.dtype).contiguous().view(x.shape[0], gh, gw, chans)
        g_w = torch.empty((k2, chans, gh, gw), dtype=x.dtype)
        with _kernel_threads():
            kern.patch_backward(x.numpy(), g.numpy(), patch, stride, g_w.numpy())
        g_w = g_w.view(k2, chans, n_patch).permute(2, 1, 0).mul(gain)
        g_b = g.sum(0).view(n_patch, chans).mul(gain)
        return None, g_w, g_b, None, None, None, None


def patch_currents(images: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                   gain: float, patch: int, stride: int, grid: tuple[int, int]) -> torch.Tensor:
    """Currents ``(B, P * C)`` of :class:`lifnet.layers.PatchEncoding` from ``(B, H, W)``
    images, weights ``(P, C, k*k)`` and biases ``(P, C)``, by the CPU kernel: the same
    operations in the same order as the layer's PyTorch path, so the same currents bit
    for bit; the weight gradient is one parallel pass over the grid rows."""
    return _PatchCurrents.apply(images, weight, bias, gain, patch, stride, tuple(grid))
