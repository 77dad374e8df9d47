"""CPU kernels (numba) of the fast paths: the encoding population fused with the dense
output synapses, a LIF population over a window, the locally connected patch synapses.

Imported only by :mod:`lifnet.fast`, lazily, and only for CPU tensors. numba ships as a
wheel with its own LLVM, so no C compiler is needed; the kernels are compiled on first use
and cached on disk (``cache=True``: beside this file, or in numba's user cache folder where
this one is read-only).

The gradient formulas are derived in :mod:`lifnet.fast`.

Surrogate kinds (``kind``) follow :data:`lifnet.surrogate.SURROGATES`: 0 fast_sigmoid,
1 sigmoid, 2 arctan, 3 triangle, 4 gaussian, each written as that module writes it.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

SURROGATE_KINDS = ("fast_sigmoid", "sigmoid", "arctan", "triangle", "gaussian")


@njit(cache=True, error_model="numpy")
def _surrogate_times(x, f, kind, width, h):
    """``h[n] = sg(x[n]) * f[n]`` for the surrogate ``kind``: one loop per kind
    (a branch outside the loop, so that each loop is vectorised), in ``x``'s dtype."""
    dt = x.dtype
    one, w = dt.type(1.0), dt.type(width)
    inv_w = one / w
    if kind == 0:
        c = one / (dt.type(2.0) * w)
        for n in range(x.shape[0]):
            y = one / (one + abs(x[n]) * inv_w)
            h[n] = y * y * c * f[n]
    elif kind == 1:
        for n in range(x.shape[0]):
            s = one / (one + np.exp(-x[n] * inv_w))
            h[n] = s * (one - s) * inv_w * f[n]
    elif kind == 2:
        c = one / dt.type(math.pi * width)
        for n in range(x.shape[0]):
            r = abs(x[n]) * inv_w
            q = (one / r) * (one / r) if r > one else r * r
            v = q / (one + q) if r > one else one / (one + q)
            h[n] = v * c * f[n]
    elif kind == 3:
        for n in range(x.shape[0]):
            h[n] = max(dt.type(0.0), one - abs(x[n]) * inv_w) * inv_w * f[n]
    else:
        c = one / dt.type(math.sqrt(2.0 * math.pi) * width)
        lim = dt.type(64.0)
        for n in range(x.shape[0]):
            r = min(max(x[n] * inv_w, -lim), lim)
            h[n] = np.exp(dt.type(-0.5) * r * r) * c * f[n]


@njit(cache=True, inline="always", error_model="numpy")
def _integrate(v, drive, beta, v_rest):
    """The potential before the reset, as lif_step computes it: ``(v - v_rest) beta +
    v_rest + drive``, each operation rounded in the dtype (no fused multiply-add)."""
    return (v - v_rest) * beta + v_rest + drive


@njit(cache=True, inline="always", error_model="numpy")
def _reset_to(u, s, v_reset, one):
    """lif_step's reset to ``v_reset``, ``s v_reset + (1 - s) u``: exactly ``v_reset``
    after a spike (``u - (u - v_reset)`` is not, at large potentials)."""
    return s * v_reset + (one - s) * u


@njit(cache=True, error_model="numpy")
def _step_row(v, drive, beta, v_rest, v_th, v_reset, s, x):
    """One step of a row of neurons under a constant drive, as lif_step takes it: the
    spikes into ``s``, ``u - v_th`` into ``x``, the potentials after the reset into ``v``."""
    one, zero = v.dtype.type(1.0), v.dtype.type(0.0)
    for n in range(v.shape[0]):
        u = _integrate(v[n], drive[n], beta, v_rest)
        sp = one if u >= v_th else zero
        s[n] = sp
        x[n] = u - v_th
        v[n] = _reset_to(u, sp, v_reset, one)


@njit(cache=True, fastmath=True, error_model="numpy")
def _dot(a, b):
    """``sum(a * b)``, vectorised (fast-math flags on this function's operations only,
    which lets the sum be reordered; the neuron arithmetic around it stays strict)."""
    total = a.dtype.type(0.0)
    for i in range(a.shape[0]):
        total += a[i] * b[i]
    return total


@njit(cache=True, parallel=True, error_model="numpy")
def encode_dense_forward(drive, steps, beta, v_rest, v_th, v_reset, v_init, weight, out):
    """Output current of dense synapses fed by an encoding population under a constant
    current. ``drive`` ``(B, N)`` is ``(1 - beta) R I`` rounded as PyTorch rounds it;
    ``weight`` is ``(K, N)``; ``out`` ``(T, B, K)`` holds the bias on entry and gets, at
    each step, ``weight @ spikes``. The neurons are stepped with the reference's
    operations (:func:`_integrate`, :func:`_reset_to`), so the spikes are exactly
    lif_simulate's. Rows run in parallel."""
    batch, n_in = drive.shape
    k_out = out.shape[2]
    dt = drive.dtype
    beta, v_rest, v_th = dt.type(beta), dt.type(v_rest), dt.type(v_th)
    v_reset = dt.type(v_reset)
    for b in prange(batch):
        v = np.empty(n_in, dt)
        v[:] = dt.type(v_init)
        s = np.empty(n_in, dt)
        x = np.empty(n_in, dt)
        for t in range(steps):
            _step_row(v, drive[b], beta, v_rest, v_th, v_reset, s, x)
            for k in range(k_out):
                out[t, b, k] += _dot(weight[k], s)


@njit(cache=True, error_model="numpy")
def _encode_dense_rows(lo, hi, drive, beta, v_rest, v_th, v_reset, v_init, grad, weight,
                       kind, width, grad_current, grad_weight):
    steps, _, k_out = grad.shape
    n_in = drive.shape[1]
    dt = grad.dtype
    beta_in = beta
    beta, v_rest, v_th = dt.type(beta), dt.type(v_rest), dt.type(v_th)
    v_reset, zero = dt.type(v_reset), dt.type(0.0)
    v = np.empty(n_in, dt)
    s = np.empty(n_in, dt)
    alpha = dt.type(1.0 - beta_in)
    rise = np.empty(n_in, dt)                       # 1 - beta^m, m: steps since the reset
    fac = np.empty(n_in, dt)
    x = np.empty(n_in, dt)
    h = np.empty(n_in, dt)
    g_spk = np.empty(n_in, dt)                      # dL/ds at this step: grad @ weight
    acc = np.empty(n_in, dt)                        # sum over steps of dL/ds dS/dI / R
    acc_w = np.zeros((k_out, n_in), dt)             # grad summed at the spikes
    for b in range(lo, hi):
        acc[:] = 0.0
        v[:] = dt.type(v_init)
        rise[:] = zero
        for t in range(steps):
            _step_row(v, drive[b], beta, v_rest, v_th, v_reset, s, x)
            for n in range(n_in):
                # 1 - beta^m, by 1 - beta^(m+1) = (1 - beta) + beta (1 - beta^m), which does
                # not cancel when beta is near 1; a spike starts it again from 0
                r = alpha + beta * rise[n]
                fac[n] = r
                rise[n] = zero if s[n] != zero else r
            _surrogate_times(x, fac, kind, width, h)    # sg(u - v_th) (1 - beta^m)
            # dL/ds[t] = grad[t] @ weight, summed over k as the reference's product does
            g_spk[:] = 0.0
            for k in range(k_out):
                gk = grad[t, b, k]
                for n in range(n_in):
                    g_spk[n] += gk * weight[k, n]
                    acc_w[k, n] += gk * s[n]
            for n in range(n_in):
                acc[n] += g_spk[n] * h[n]
        for n in range(n_in):
            grad_current[b, n] = acc[n]
    for k in range(k_out):
        for n in range(n_in):
            grad_weight[k, n] += acc_w[k, n]


@njit(cache=True, parallel=True, error_model="numpy")
def encode_dense_backward(drive, beta, v_rest, v_th, v_reset, v_init, grad, weight, kind,
                          width, grad_current, grad_weight_parts):
    """Gradients of :func:`encode_dense_forward`. ``grad`` ``(T, B, K)`` is dL/d(output
    current). The neurons are stepped again; writes ``grad_current[b, n] = sum_t (sum_k
    grad[t, b, k] weight[k, n]) sg(u[t] - v_th) (1 - beta^m[t])`` (``m``: steps since the
    last reset or the start; to be multiplied by R) and adds ``grad[t, b, :]`` at every
    spike of ``(b, n)`` to ``grad_weight_parts[c, :, n]``, one part per chunk of rows
    ``c`` (summed by the caller), so that the chunks run in parallel."""
    batch = grad.shape[1]
    chunks = grad_weight_parts.shape[0]
    for c in prange(chunks):
        _encode_dense_rows(c * batch // chunks, (c + 1) * batch // chunks, drive, beta,
                           v_rest, v_th, v_reset, v_init, grad, weight, kind, width,
                           grad_current, grad_weight_parts[c])


# -- a LIF population over a window ----------------------------------------------------
# The forward repeats the reference's float32 (or float64) operations one by one, each
# rounded as PyTorch rounds it (the scalars rounded to the tensor's dtype first, no fused
# multiply-add), so the spikes are bit for bit those of lifnet.neuron.lif_simulate.


@njit(cache=True, parallel=True, error_model="numpy")
def lif_window_forward(drive, constant, steps, beta, v_rest, v_th, v_reset, v_init,
                       to_reset, chunk, spikes, potentials, keep):
    """Spikes ``(T, M)`` of ``M`` neurons; ``drive`` is ``(1 - beta) R I`` as ``(T, M)``
    or, with ``constant``, ``(1, M)`` for every step. With ``keep`` the pre-reset
    potentials are written to ``potentials`` ``(T, M)``. Columns run in parallel in
    chunks of ``chunk``."""
    m_all = spikes.shape[1]
    dt = spikes.dtype
    beta, v_rest, v_th = dt.type(beta), dt.type(v_rest), dt.type(v_th)
    v_reset, v_init = dt.type(v_reset), dt.type(v_init)
    jump = dt.type(v_th - v_reset)
    one, zero = dt.type(1.0), dt.type(0.0)
    chunks = (m_all + chunk - 1) // chunk
    for c in prange(chunks):
        lo = c * chunk
        hi = min(m_all, lo + chunk)
        v = np.empty(hi - lo, dt)
        v[:] = v_init
        for t in range(steps):
            row = 0 if constant else t
            for j in range(hi - lo):
                i = lo + j
                u = _integrate(v[j], drive[row, i], beta, v_rest)
                s = one if u >= v_th else zero
                if keep:
                    potentials[t, i] = u
                spikes[t, i] = s
                v[j] = _reset_to(u, s, v_reset, one) if to_reset else u - s * jump


@njit(cache=True, parallel=True, error_model="numpy")
def lif_window_backward(potentials, spikes, grad, beta, v_th, v_reset, to_reset, detach,
                        kind, width, scale, constant, chunk, out):
    """BPTT gradient with respect to the current (see lifnet.fast._backward_loop): the
    adjoint ``du[t] = g[t] sg(u[t] - v_th) + f[t] du[t + 1]`` run backwards in time,
    times ``scale = (1 - beta) R``; ``out`` is ``(T, M)``, or ``(1, M)`` summed over the
    steps with ``constant``. ``potentials`` are the pre-reset potentials."""
    steps, m_all = spikes.shape
    dt = spikes.dtype
    beta, v_th, v_reset = dt.type(beta), dt.type(v_th), dt.type(v_reset)
    jump, one, scale = dt.type(v_th - v_reset), dt.type(1.0), dt.type(scale)
    chunks = (m_all + chunk - 1) // chunk
    for c in prange(chunks):
        lo = c * chunk
        hi = min(m_all, lo + chunk)
        width_c = hi - lo
        nxt = np.zeros(width_c, dt)
        acc = np.zeros(width_c, dt)
        x = np.empty(width_c, dt)
        ones = np.ones(width_c, dt)
        sg = np.empty(width_c, dt)
        for t in range(steps - 1, -1, -1):
            for j in range(width_c):
                x[j] = potentials[t, lo + j] - v_th
            _surrogate_times(x, ones, kind, width, sg)
            for j in range(width_c):
                i = lo + j
                s = spikes[t, i]
                if detach:
                    f = beta * (one - s) if to_reset else beta
                elif to_reset:
                    f = beta * (one - s - (x[j] + jump) * sg[j])
                else:
                    f = beta * (one - jump * sg[j])
                du = grad[t, i] * sg[j] + f * nxt[j]
                nxt[j] = du
                if constant:
                    acc[j] += du
                else:
                    out[t, i] = du * scale
        if constant:
            for j in range(width_c):
                out[0, lo + j] = acc[j] * scale


# -- locally connected patch synapses --------------------------------------------------


@njit(cache=True, parallel=True, error_model="numpy", fastmath={"contract"})
def patch_forward(images, weight, bias, gain, patch, stride, out):
    """Currents of lifnet.layers.PatchEncoding, operation for operation as its PyTorch
    path computes them (so the currents are bit for bit the same): for every neuron,
    ``d = x[0, 0] w[0, 0]``, then ``d = fma(x[i, j], w[i, j], d)`` offset by offset (row
    by row; PyTorch's ``addcmul`` is a fused multiply-add on a CPU, and the "contract"
    flag lets LLVM emit one here), then ``gain * (d + bias)``. ``images`` ``(B, H, W)``;
    ``weight`` ``(k*k, C, gh, gw)``; ``bias`` ``(gh, gw, C)``; ``out`` ``(B, gh, gw, C)``.
    Rows run in parallel."""
    batch = images.shape[0]
    k2, chans, gh, gw = weight.shape
    dt = out.dtype
    gain = dt.type(gain)
    for b in prange(batch):
        d = np.empty(gw, dt)
        for c in range(chans):
            for r in range(gh):
                for ij in range(k2):
                    i, j = ij // patch, ij % patch
                    row = images[b, r * stride + i]
                    w = weight[ij, c, r]
                    if ij == 0:
                        for q in range(gw):
                            d[q] = row[q * stride + j] * w[q]
                    elif stride == 1:
                        for q in range(gw):
                            d[q] = d[q] + row[q + j] * w[q]
                    else:
                        for q in range(gw):
                            d[q] = d[q] + row[q * stride + j] * w[q]
                for q in range(gw):
                    out[b, r, q, c] = gain * (d[q] + bias[r, q, c])


@njit(cache=True, parallel=True, error_model="numpy")
def patch_backward(images, grad, patch, stride, grad_weight):
    """``grad_weight[ij, c, r, q] = sum_b x[b, r s + i, q s + j] grad[b, r, q, c]`` (the
    gain is applied by the caller); ``grad`` ``(B, gh, gw, C)``. Grid rows run in
    parallel."""
    batch = images.shape[0]
    k2, chans, gh, gw = grad_weight.shape
    dt = grad_weight.dtype
    for r in prange(gh):
        g = np.empty(gw, dt)
        for c in range(chans):
            for ij in range(k2):
                grad_weight[ij, c, r, :] = 0.0
            for b in range(batch):
                for q in range(gw):
                    g[q] = grad[b, r, q, c]
                for ij in range(k2):
                    i, j = ij // patch, ij % patch
                    row = images[b, r * stride + i]
                    acc = grad_weight[ij, c, r]
                    if stride == 1:
                        for q in range(gw):
                            acc[q] += row[q + j] * g[q]
                    else:
                        for q in range(gw):
                            acc[q] += row[q * stride + j] * g[q]
