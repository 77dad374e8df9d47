"""Targets, losses and decoders: how output spike trains stand for classes.

Output spike trains are ``(T, B, K)``: steps, batch, one neuron per class.

Window coding (the notebook's). The window of ``T`` steps is cut into one slot per class,
``L = T // K`` steps each (slot ``c`` is steps ``c*L`` to ``c*L + L - 1``; any remainder
at the end of the window belongs to no slot). For a sample of class ``c`` the neuron of
class ``c`` should spike at the class's target times inside slot ``c`` and every other
neuron should stay silent. Target times are ``regular`` (``m`` spikes at the centres of
``m`` equal parts of the slot) or ``random`` (for each class, between 1 and ``m`` distinct
steps of its slot, any step including the last, drawn once from a seeded generator). The
loss is the error energy ``E = 1/2 * sum over steps and neurons of (d - s)^2``, averaged
over the batch; a sample is decoded as the class whose target train is nearest its output
(least error energy; ties go to the lowest class index).

Rate coding. The loss is the cross-entropy of the spike counts (``count_scale * counts``
as logits) or the squared error to target counts (``target_rate * T`` for the right class,
0 for the others); a sample is decoded as the class with most spikes (ties: lowest index).
Its error energy, reported for comparison, is taken against a train of ``target_rate * T``
evenly spaced spikes on the right class's neuron.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from .config import CodingConfig


def slot_bounds(steps: int, num_classes: int) -> list[tuple[int, int]]:
    """First and last step (inclusive) of each class's slot."""
    length = steps // num_classes
    return [(c * length, c * length + length - 1) for c in range(num_classes)]


def _spread(count: int, length: int) -> list[int]:
    """Offsets of ``count`` spikes at the centres of ``count`` equal parts of ``length``."""
    return [((2 * i + 1) * length) // (2 * count) for i in range(count)]


def window_targets(num_classes: int, steps: int, spikes_per_slot: int = 1,
                   times: str = "regular", seed: int = 0) -> torch.Tensor:
    """Target trains of window coding: ``(K, T, K)``, entry ``c`` is the train for class c."""
    length = steps // num_classes
    if not 1 <= spikes_per_slot <= length:
        raise ValueError(f"spikes_per_slot = {spikes_per_slot}: accepted: 1 to {length}")
    targets = torch.zeros(num_classes, steps, num_classes)
    gen = torch.Generator().manual_seed(seed)
    for c, (start, _) in enumerate(slot_bounds(steps, num_classes)):
        if times == "regular":
            offsets = _spread(spikes_per_slot, length)
        else:
            count = int(torch.randint(1, spikes_per_slot + 1, (1,), generator=gen))
            offsets = torch.randperm(length, generator=gen)[:count].tolist()
        for o in offsets:
            targets[c, start + o, c] = 1.0
    return targets


def rate_targets(num_classes: int, steps: int, target_rate: float) -> torch.Tensor:
    """Trains for rate coding's error energy: ``(K, T, K)``, evenly spaced spikes on ``c``."""
    count = max(0, min(steps, round(target_rate * steps)))
    targets = torch.zeros(num_classes, steps, num_classes)
    for c in range(num_classes):
        for o in _spread(count, steps) if count else []:
            targets[c, o, c] = 1.0
    return targets


def error_energy(spikes: torch.Tensor, desired: torch.Tensor) -> torch.Tensor:
    """Per-sample error energy ``1/2 sum_{t,k} (d - s)^2``: ``(T, B, K)`` twice to ``(B,)``."""
    return 0.5 * (desired - spikes).square().sum(dim=(0, 2))


def target_distances(spikes: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Error energy of each sample against every class's target: ``(B, K)``.

    ``spikes`` is ``(T, B, K)``, ``targets`` ``(K, T, K)``. Uses
    ``|d - s|^2 = |s|^2 + |d|^2 - 2 <s, d>`` so no ``(B, K, T, K)`` tensor is built.
    """
    s = spikes.transpose(0, 1).flatten(1)          # (B, T*K)
    d = targets.flatten(1).to(s)                   # (K, T*K)
    return 0.5 * (s.square().sum(1, keepdim=True) + d.square().sum(1) - 2.0 * s @ d.T)


class Coding:
    """The loss, error energy and decoder for one :class:`CodingConfig`."""

    def __init__(self, cfg: CodingConfig, steps: int, num_classes: int) -> None:
        self.cfg, self.steps, self.num_classes = cfg, steps, num_classes
        if cfg.scheme == "window":
            self.targets = window_targets(num_classes, steps, cfg.target_spikes,
                                          cfg.target_times, cfg.target_seed)
        else:
            self.targets = rate_targets(num_classes, steps, cfg.target_rate)

    def desired(self, labels: torch.Tensor) -> torch.Tensor:
        """Target trains for a batch of labels: ``(T, B, K)``."""
        return self.targets.to(labels.device)[labels].transpose(0, 1)

    def error_energy(self, spikes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-sample error energy against the labels' target trains: ``(B,)``."""
        return error_energy(spikes, self.desired(labels).to(spikes.dtype))

    def loss(self, spikes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Scalar training loss of a batch (mean over the batch)."""
        if self.cfg.loss == "error_energy":
            return self.error_energy(spikes, labels).mean()
        counts = spikes.sum(0)                                      # (B, K)
        if self.cfg.loss == "cross_entropy":
            return F.cross_entropy(self.cfg.count_scale * counts, labels)
        wanted = F.one_hot(labels, self.num_classes).to(counts) * (
            self.cfg.target_rate * self.steps)
        return F.mse_loss(counts, wanted)

    def scores(self, spikes: torch.Tensor) -> torch.Tensor:
        """``(B, K)``, higher is better: spike counts, or minus the distance to each target."""
        if self.cfg.scheme == "window":
            return -target_distances(spikes, self.targets.to(spikes.device))
        return spikes.sum(0)

    def decode(self, spikes: torch.Tensor) -> torch.Tensor:
        """Predicted class of each sample, ``(B,)`` (ties go to the lowest index)."""
        return self.scores(spikes).argmax(1)
