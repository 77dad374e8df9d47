"""The spike: a Heaviside step forward, a surrogate derivative backward.

``spike_fn(x)`` takes ``x = V - v_th`` in mV and returns ``1.0`` where ``x >= 0`` (a
potential exactly at threshold spikes) and ``0.0`` elsewhere. Its backward pass replaces the
Dirac delta by a smooth bump of width ``width`` (mV). Every shape is normalised to unit area,
so it tends to the Dirac delta as the width goes to zero and the width alone sets how far
from threshold a potential still feels a gradient:

- ``fast_sigmoid`` (default, SuperSpike): ``1 / (2 w (1 + |x|/w)^2)``
- ``sigmoid``: the derivative of ``sigmoid(x / w)``, ``sigmoid(x/w) (1 - sigmoid(x/w)) / w``
- ``arctan``: ``1 / (pi w (1 + (x/w)^2))``
- ``triangle``: ``max(0, 1 - |x|/w) / w``
- ``gaussian``: ``exp(-x^2 / (2 w^2)) / (sqrt(2 pi) w)``

All are written so that they stay finite (and non-negative) in float16 and float32 for any
finite ``x``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch

SurrogateName = Literal["fast_sigmoid", "sigmoid", "arctan", "triangle", "gaussian"]


def _fast_sigmoid(x: torch.Tensor, w: float) -> torch.Tensor:
    return (1.0 / (1.0 + x.abs() / w)).square() / (2.0 * w)


def _sigmoid(x: torch.Tensor, w: float) -> torch.Tensor:
    s = torch.sigmoid(x / w)
    return s * (1.0 - s) / w


def _arctan(x: torch.Tensor, w: float) -> torch.Tensor:
    # 1 / (1 + r^2), rewritten for r > 1 so that r^2 cannot overflow in float16
    r = (x / w).abs()
    inv = torch.where(r > 1.0, (1.0 / r).square() / (1.0 + (1.0 / r).square()),
                      1.0 / (1.0 + r.square()))
    return inv / (math.pi * w)


def _triangle(x: torch.Tensor, w: float) -> torch.Tensor:
    return (1.0 - x.abs() / w).clamp_min(0.0) / w


def _gaussian(x: torch.Tensor, w: float) -> torch.Tensor:
    r = (x / w).clamp(-64.0, 64.0)
    return torch.exp(-0.5 * r.square()) / (math.sqrt(2.0 * math.pi) * w)


SURROGATES: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "fast_sigmoid": _fast_sigmoid,
    "sigmoid": _sigmoid,
    "arctan": _arctan,
    "triangle": _triangle,
    "gaussian": _gaussian,
}


def surrogate_derivative(x: torch.Tensor, name: str = "fast_sigmoid",
                         width: float = 1.0) -> torch.Tensor:
    """The surrogate d(spike)/dV at ``x = V - v_th`` (mV), in 1/mV."""
    return SURROGATES[name](x, width)


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, name: str, width: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.name, ctx.width = name, width
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad * SURROGATES[ctx.name](x, ctx.width), None, None


def spike_fn(x: torch.Tensor, name: str = "fast_sigmoid", width: float = 1.0) -> torch.Tensor:
    """Heaviside step of ``x = V - v_th`` (mV) with a surrogate derivative.

    Parameters
    ----------
    x : Tensor, any shape
        Distance to threshold in mV.
    name : str
        One of :data:`SURROGATES`.
    width : float
        Width of the surrogate in mV (> 0).
    """
    if name not in SURROGATES:
        raise ValueError(f"surrogate = {name!r} is unknown: accepted: {', '.join(SURROGATES)}")
    if not width > 0:
        raise ValueError(f"surrogate_width = {width!r} is out of range: accepted: > 0 mV")
    return _Spike.apply(x, name, width)
