"""Layers of a spiking network: synapses that make currents, populations that make spikes.

Shapes are time-first: a spike train or a current sequence is ``(T, B, N)`` (steps, batch,
neurons). Currents are in nA, spikes are 0.0 or 1.0. Synapse weights are in nA per unit of
input (per spike, or per unit pixel for the patch synapses before their gain).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .errors import bad_value
from .fast import (
    covers,
    encode_constant,
    lif_fused,
    patch_currents,
    patch_kernel_covers,
)
from .neuron import LIFParameters, lif_simulate
from .surrogate import SURROGATES


def patch_grid(height: int, width: int, patch_size: int, stride: int) -> tuple[int, int]:
    """Number of patch positions along each axis: ``floor((H - k) / s) + 1`` (and for W).

    Every position whose patch lies wholly inside the image counts, the last one included
    (28 x 28, k = 5, s = 1 gives 24 x 24 = 576).
    """
    if patch_size < 1:
        raise bad_value("patch_size", patch_size, ">= 1")
    if stride < 1:
        raise bad_value("patch_stride", stride, ">= 1")
    if patch_size > min(height, width):
        raise bad_value("patch_size", patch_size,
                        f"<= the image's smaller side, {min(height, width)} pixels")
    return (height - patch_size) // stride + 1, (width - patch_size) // stride + 1


class PatchEncoding(nn.Module):
    """Locally connected synapses from image patches to encoding neurons.

    Every patch position ``p`` has its own ``k x k`` weights for each of its ``channels``
    neurons (nothing is shared between positions), and the current of neuron ``(p, c)`` is
    ``gain * (sum over the patch of pixel * weight + bias)`` in nA, constant over the
    window.

    Input ``(B, H, W)`` pixels in [0, 1]; output ``(B, P * C)`` currents in nA, neuron index
    ``p * C + c`` with ``p`` running row by row over the patch grid. With ``fast=True`` a
    CPU kernel (:func:`lifnet.fast.patch_currents`) computes the same currents bit for bit.
    """

    def __init__(self, image_size: tuple[int, int], patch_size: int, stride: int = 1,
                 channels: int = 1, gain: float = 1.0, weight_scale: float = 1.0,
                 fast: bool = False) -> None:
        super().__init__()
        if channels < 1:
            raise bad_value("channels", channels, ">= 1")
        self.image_size = tuple(image_size)
        self.patch_size, self.stride, self.channels, self.gain = patch_size, stride, channels, gain
        self.grid = patch_grid(*self.image_size, patch_size, stride)
        self.num_patches = self.grid[0] * self.grid[1]
        k2 = patch_size * patch_size
        bound = weight_scale / math.sqrt(k2)
        weight = torch.empty(self.num_patches, channels, k2).uniform_(-bound, bound)
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(self.num_patches, channels))
        self.fast = fast

    @property
    def out_features(self) -> int:
        return self.num_patches * self.channels

    def patches(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, H, W)`` images to ``(B, P, k*k)`` patches."""
        if images.dim() != 3 or tuple(images.shape[1:]) != self.image_size:
            raise ValueError(f"images of shape {tuple(images.shape)}: accepted: (batch, "
                             f"{self.image_size[0]}, {self.image_size[1]})")
        cols = F.unfold(images.unsqueeze(1), self.patch_size, stride=self.stride)  # (B, k*k, P)
        return cols.transpose(1, 2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 3 or tuple(images.shape[1:]) != self.image_size:
            raise ValueError(f"images of shape {tuple(images.shape)}: accepted: (batch, "
                             f"{self.image_size[0]}, {self.image_size[1]})")
        if self.fast and patch_kernel_covers(images, self.weight):
            return patch_currents(images, self.weight, self.bias, self.gain, self.patch_size,
                                  self.stride, self.grid)
        # One multiply-add per offset (i, j) inside the patch, over every patch position
        # and channel at once: k*k operations on (B, C, gh, gw), no (B, P, k*k) copy of
        # the patches. The CPU kernel (fast) repeats these operations in this order.
        k, s, c = self.patch_size, self.stride, self.channels
        gh, gw = self.grid
        x = images.unsqueeze(1)                                           # (B, 1, H, W)
        w = self.weight.permute(2, 1, 0).reshape(k * k, c, gh, gw)        # (k*k, C, gh, gw)
        drive = None
        for i in range(k):
            for j in range(k):
                shifted = x[:, :, i:i + s * (gh - 1) + 1:s, j:j + s * (gw - 1) + 1:s]
                wij = w[i * k + j]
                drive = shifted * wij if drive is None else torch.addcmul(drive, shifted, wij)
        drive = drive.flatten(2).transpose(1, 2) + self.bias              # (B, P, C)
        return self.gain * drive.flatten(1)                               # (B, P*C) nA


class LIF(nn.Module):
    """A population of LIF neurons (no weights): currents in, spikes out.

    ``forward(current, steps=None, record_v=False)`` takes ``(T, B, N)`` currents, or
    ``(B, N)`` currents held for ``steps`` steps, and returns ``(spikes, v)`` with spikes
    ``(T, B, N)`` and the membrane trace ``(T, B, N)`` in mV when ``record_v`` (else None).
    Every call starts from ``v_init``: no state leaks between batches.

    With ``fast=True`` the window runs in :mod:`lifnet.fast` (a constant current in closed
    form, a varying one in a fused window): the same spikes and, to float tolerance, the same
    gradients. A refractory period or ``record_v`` runs the stepped reference either way.
    """

    def __init__(self, params: LIFParameters, surrogate: str = "fast_sigmoid",
                 surrogate_width: float = 1.0, detach_reset: bool = True,
                 fast: bool = False) -> None:
        super().__init__()
        if surrogate not in SURROGATES:
            raise bad_value("surrogate", surrogate, " or ".join(map(repr, SURROGATES)))
        if not surrogate_width > 0:
            raise bad_value("surrogate_width", surrogate_width, "> 0 mV")
        self.params = params
        self.surrogate, self.surrogate_width, self.detach_reset = (
            surrogate, surrogate_width, detach_reset)
        self.fast = fast

    def forward(self, current: torch.Tensor, steps: int | None = None,
                record_v: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.fast and covers(self.params, record_v):
            if steps is not None:
                if steps < 1:
                    raise bad_value("steps", steps, ">= 1")
                spikes = encode_constant(current, self.params, steps, self.surrogate,
                                         self.surrogate_width, self.detach_reset)
            else:
                spikes = lif_fused(current, self.params, None, self.surrogate,
                                   self.surrogate_width, self.detach_reset)
            return spikes, None
        spikes, v, _ = lif_simulate(current, self.params, steps=steps,
                                    surrogate=self.surrogate, width=self.surrogate_width,
                                    detach_reset=self.detach_reset, record_v=record_v)
        return spikes, v

    def extra_repr(self) -> str:
        p = self.params
        return (f"R={p.resistance} MOhm, tau_m={p.tau_m} ms, v_rest={p.v_rest} mV, "
                f"v_th={p.v_th} mV, v_reset={p.v_reset} mV, dt={p.dt} ms, reset={p.reset}, "
                f"fast={self.fast}")


def _init_bound(n_in: int, scale: float) -> float:
    return scale / math.sqrt(n_in)


class DenseSynapse(nn.Module):
    """``I_k(t) = sum_u W[k, u] * S_u(t) + b_k``: ``(T, B, N)`` spikes to ``(T, B, K)`` nA."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 weight_scale: float = 1.0) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = _init_bound(in_features, weight_scale)
        self.weight = nn.Parameter(torch.empty(out_features, in_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        return F.linear(spikes, self.weight, self.bias)


class TimeIndexedSynapse(nn.Module):
    """A weight per output, input and step: ``I_k(t) = sum_u W[k, u, t] * S_u(t)``.

    The notebook's ``W_mlp[k][u][t]``. It lets the neuron of class ``k`` be driven only
    inside its time window. ``(T, B, N)`` spikes to ``(T, B, K)`` nA; ``T`` is fixed.
    """

    def __init__(self, in_features: int, out_features: int, steps: int,
                 weight_scale: float = 1.0) -> None:
        super().__init__()
        self.in_features, self.out_features, self.steps = in_features, out_features, steps
        bound = _init_bound(in_features, weight_scale)
        self.weight = nn.Parameter(
            torch.empty(out_features, in_features, steps).uniform_(-bound, bound))

    def per_step(self, spikes: torch.Tensor) -> torch.Tensor:
        if spikes.shape[0] != self.steps:
            raise ValueError(f"{spikes.shape[0]} steps: this synapse was built for {self.steps}")
        w = self.weight.permute(2, 1, 0)             # (T, N, K)
        return torch.bmm(spikes, w)                  # (T, B, K)

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        return self.per_step(spikes)


class TimeIndexedIntegratedSynapse(TimeIndexedSynapse):
    """The notebook taken literally: ``I_k = sum_u sum_t W[k, u, t] * S_u(t)``.

    One constant current per output neuron for the whole window, ``(T, B, N)`` spikes to
    ``(B, K)`` nA. It is acausal (the current at ``t = 0`` depends on spikes at the end of
    the window) and a neuron under constant current fires periodically, so window targets
    are out of its reach. Kept for comparison with the notebook only.
    """

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        return self.per_step(spikes).sum(0)
