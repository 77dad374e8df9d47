"""Training and evaluation: minibatches, one learning rate per layer, the stopping rule.

The library is silent: progress reaches the caller through the ``on_batch`` and
``on_epoch`` callbacks of :meth:`Trainer.fit`; the command line draws the bar and writes
the files.

Reproducibility. The weights come from ``torch.manual_seed(seed)`` before the network is
built; the shuffling and the random shifts of epoch ``e`` come from a generator seeded with
``(seed, e)`` alone, so a CPU run repeats exactly, and a run resumed at the start of an epoch
sees the same batches as one that never stopped.

Stopping and resuming. :attr:`Trainer.position` says where training stands: the epoch to
run next, the batches of it already done, the state of that epoch's generator and the
epoch's running sums. :meth:`Trainer.fit` asks ``should_stop()`` at every batch boundary;
when it answers True, :class:`TrainingStopped` is raised with the position, which (with the
weights and the optimiser state) is all a checkpoint needs: resumed with ``resume=`` the run
goes on exactly as if it had never stopped. A loss that is not finite raises
:class:`~lifnet.errors.NonFiniteLossError` before it touches the weights.

``sgd`` with no momentum is the notebook's delta rule: ``w <- w - eta * dE/dw`` with the
gradient of the error energy given by backpropagation through the surrogate derivative,
``eta`` per layer (``encoding_lr``, ``hidden_lr``, ``output_lr``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch.nn import functional as F

from .coding import Coding
from .distributed import Context, all_reduce_sum, all_reduce_tensor
from .config import Config
from .errors import NonFiniteLossError, bad_value
from .network import PatchNet


@dataclass
class EpochMetrics:
    """What one epoch measured. Accuracies are fractions; ``val_accuracy`` is None when no
    validation split is held out."""

    epoch: int
    loss: float
    error_energy: float
    train_accuracy: float
    val_accuracy: float | None
    val_error_energy: float | None
    samples_per_second: float
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Position:
    """Where training stands, at a batch boundary.

    ``epoch`` is the epoch to run next (from 1), ``batch`` how many of its batches are
    done; ``generator_state`` is the state of that epoch's generator after them (None when
    ``batch`` is 0) and ``sums`` the epoch's running sums (loss, error energy, correct,
    samples). ``finished`` is True once :meth:`Trainer.fit` has returned.
    """

    epoch: int = 1
    batch: int = 0
    generator_state: torch.Tensor | None = None
    sums: dict = field(default_factory=dict)
    finished: bool = False


class TrainingStopped(Exception):
    """``should_stop()`` answered True; ``position`` says where training stopped."""

    def __init__(self, position: Position) -> None:
        super().__init__(f"stopped at epoch {position.epoch}, batch {position.batch}")
        self.position = position


def _zero_sums() -> dict:
    return {"loss": 0.0, "error_energy": 0.0, "correct": 0.0, "seen": 0.0}


@dataclass
class Evaluation:
    accuracy: float
    mean_error_energy: float
    confusion: list[list[int]]        # confusion[true][predicted]
    predictions: torch.Tensor
    scores: torch.Tensor


def build(cfg: Config, image_size: tuple[int, int]) -> tuple[PatchNet, Coding]:
    """The network (weights drawn from ``training.seed``) and its coding."""
    cfg.validate()
    h, w = image_size
    if cfg.network.patch_size > min(h, w):
        raise bad_value("network.patch_size", cfg.network.patch_size,
                        f"<= {min(h, w)} px, the smaller side of the {h} x {w} images")
    torch.manual_seed(cfg.training.seed)
    model = PatchNet(cfg, image_size)
    return model, Coding(cfg.coding, cfg.network.steps, cfg.network.num_classes)


def make_optimizer(model: PatchNet, cfg: Config) -> torch.optim.Optimizer:
    """One parameter group per layer, each with its own learning rate."""
    t = cfg.training
    rates = {"encoding": t.encoding_lr, "hidden": t.hidden_lr or t.output_lr,
             "output": t.output_lr}
    groups = [{"params": params, "lr": rates[name], "name": name}
              for name, params in model.parameter_groups().items() if params]
    if t.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=t.output_lr, momentum=t.momentum)
    return torch.optim.Adam(groups, lr=t.output_lr)


def split_validation(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the training and validation parts of a set of ``n`` samples."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = round(n * fraction)
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def shift_offsets(n: int, max_shift: int, gen: torch.Generator) -> torch.Tensor | None:
    """Per-sample shifts ``(2, n)`` (rows, columns) in ``0 .. 2 * max_shift``, or None."""
    if max_shift == 0:
        return None
    return torch.randint(0, 2 * max_shift + 1, (2, n), generator=gen)


def apply_shift(images: torch.Tensor, offsets: torch.Tensor | None,
                max_shift: int) -> torch.Tensor:
    """Translate each ``(H, W)`` image by its offset minus ``max_shift`` pixels, filling
    with zeros."""
    if offsets is None:
        return images
    b, h, w = images.shape
    offsets = offsets.to(images.device)
    padded = F.pad(images, (max_shift,) * 4)
    rows = torch.arange(h, device=images.device)[None, :] + offsets[0][:, None]   # (B, H)
    cols = torch.arange(w, device=images.device)[None, :] + offsets[1][:, None]   # (B, W)
    batch = torch.arange(b, device=images.device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]]


class Trainer:
    """Trains a :class:`PatchNet` under a :class:`Config`.

    Parameters
    ----------
    cfg : Config
    model : PatchNet
    coding : Coding
    device : str or torch.device
    """

    def __init__(self, cfg: Config, model: PatchNet, coding: Coding,
                 device: str | torch.device = "cpu", ctx: Context | None = None,
                 precision: str = "fp32") -> None:
        self.cfg, self.model, self.coding = cfg, model, coding
        side = min(model.image_size)
        if cfg.training.shift >= side:       # every image would leave the frame
            raise bad_value("training.shift", cfg.training.shift,
                            f"< {side} px, the images' smaller side")
        self.ctx = ctx if ctx is not None else Context(device=torch.device(device))
        self.device = self.ctx.device
        self.model.to(self.device)
        if precision not in ("fp32", "bf16"):
            raise bad_value("--precision", precision, "fp32 or bf16")
        self.precision = precision
        # the module that runs the forward pass: DDP averages the gradients across processes
        self.net = self.model
        if self.ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = make_optimizer(model, cfg)
        self._base = [g["lr"] for g in self.optimizer.param_groups]
        self.history: list[EpochMetrics] = []
        self.position = Position()

    def _lr_factor(self, epoch: int) -> float:
        t = self.cfg.training
        if t.lr_decay == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / t.max_epochs))
        return 1.0

    def train_epoch(self, epoch: int, images: torch.Tensor, labels: torch.Tensor,
                    on_batch: Callable[[int, int, float], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> dict:
        """One pass over ``images`` in shuffled minibatches; returns the epoch's sums.

        Starts after the batches that :attr:`position` says are done when it points inside
        this epoch. Raises :class:`TrainingStopped` when ``should_stop()`` is True after a
        batch that is not the epoch's last, and NonFiniteLossError on a NaN or infinite loss.
        """
        t = self.cfg.training
        gen = epoch_generator(t.seed, epoch)
        order = torch.randperm(len(labels), generator=gen)
        pos = self.position
        first, sums = 0, _zero_sums()
        if pos.epoch == epoch and pos.batch > 0:
            first, sums = pos.batch, dict(pos.sums)
            gen.set_state(pos.generator_state)
        seen_before = sums["seen"]          # samples of this epoch run before a resume
        for group, base in zip(self.optimizer.param_groups, self._base):
            group["lr"] = base * self._lr_factor(epoch)
        self.model.train()
        n_batches = math.ceil(len(labels) / t.batch_size)
        ctx = self.ctx
        for i in range(first, n_batches):
            # the global batch and its shifts, drawn alike by every process; then our share
            idx = order[i * t.batch_size:(i + 1) * t.batch_size]
            offsets = shift_offsets(len(idx), t.shift, gen)
            n_global = len(idx)
            if ctx.distributed:
                idx = idx[ctx.rank::ctx.world_size]
                offsets = None if offsets is None else offsets[:, ctx.rank::ctx.world_size]
            x = images[idx.to(images.device)].to(self.device, non_blocking=True)
            y = labels[idx.to(labels.device)].to(self.device, non_blocking=True)
            x = apply_shift(x, offsets, t.shift)
            with self._autocast():
                out = self.net(x)
            spikes = out.spikes.float()
            loss = self.coding.loss(spikes, y) if len(y) else spikes.sum()
            finite = bool(torch.isfinite(loss.detach()).all())
            if ctx.distributed:
                finite = all_reduce_sum([0.0 if finite else 1.0], ctx)[0] == 0.0
            if not finite:
                raise NonFiniteLossError(
                    f"the loss is {float(loss.detach())} at epoch {epoch}, batch {i + 1} of "
                    f"{n_batches}: training stopped before this batch changed the weights")
            self.optimizer.zero_grad(set_to_none=True)
            # DDP averages over processes: weight each share so the average is the global
            # batch's mean gradient, also when the shares differ in size
            scale = len(y) * ctx.world_size / n_global if ctx.distributed else 1.0
            (loss * scale).backward()
            self.optimizer.step()
            loss = loss.detach()
            with torch.no_grad():
                n = len(y)
                batch_sums = [float(loss) * n,
                              float(self.coding.error_energy(spikes, y).sum()) if n else 0.0,
                              float((self.coding.decode(spikes) == y).sum()) if n else 0.0,
                              float(n)]
            stop = should_stop is not None and i + 1 < n_batches and should_stop()
            if ctx.distributed:   # one reduction: the metrics and whether any process stops
                *batch_sums, stops = all_reduce_sum([*batch_sums, float(stop)], ctx)
                stop = stops > 0
            for key, value in zip(("loss", "error_energy", "correct", "seen"), batch_sums):
                sums[key] += value
            self.position = Position(epoch, i + 1, gen.get_state(), dict(sums))
            if on_batch is not None:
                on_batch(i + 1, n_batches, batch_sums[0] / max(batch_sums[3], 1.0))
            if stop:
                raise TrainingStopped(self.position)
        seen = sums["seen"]
        return {"loss": sums["loss"] / seen, "error_energy": sums["error_energy"] / seen,
                "accuracy": sums["correct"] / seen, "samples": seen,
                "samples_now": seen - seen_before}

    def _autocast(self):
        """bf16 autocast for the synapses (the membranes stay in float32), or nothing."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16,
                              enabled=self.precision == "bf16")

    def fit(self, train_images: torch.Tensor, train_labels: torch.Tensor,
            val_images: torch.Tensor | None = None, val_labels: torch.Tensor | None = None,
            on_batch: Callable[[int, int, float], None] | None = None,
            on_epoch: Callable[[EpochMetrics], None] | None = None,
            start_epoch: int = 1, resume: Position | None = None,
            should_stop: Callable[[], bool] | None = None) -> list[EpochMetrics]:
        """Train until ``max_epochs``, or until the mean error energy drops below ``min_err``.

        Images are ``(N, H, W)`` float in [0, 1], labels ``(N,)`` int64. ``resume``: the
        :class:`Position` of a checkpoint (with the weights and the optimiser state already
        restored); training goes on from there. ``should_stop``: asked after every batch
        and every epoch; True raises :class:`TrainingStopped` with :attr:`position`.
        ``on_epoch`` is called once :attr:`position` points past the epoch, so a checkpoint
        written there resumes at the next epoch.
        """
        t = self.cfg.training
        if self.device.type == "cuda":
            # small data sets go to the GPU once, not batch by batch
            train_images, train_labels = train_images.to(self.device), train_labels.to(self.device)
        if resume is not None:
            self.position = resume
            start_epoch = resume.epoch
            if resume.finished:
                return self.history
        else:
            self.position = Position(epoch=start_epoch)
        for epoch in range(start_epoch, t.max_epochs + 1):
            start = time.perf_counter()
            sums = self.train_epoch(epoch, train_images, train_labels, on_batch, should_stop)
            seconds = time.perf_counter() - start
            val = (self.evaluate(val_images, val_labels)
                   if val_labels is not None and len(val_labels) else None)
            metrics = EpochMetrics(
                epoch=epoch, loss=sums["loss"], error_energy=sums["error_energy"],
                train_accuracy=sums["accuracy"],
                val_accuracy=val.accuracy if val else None,
                val_error_energy=val.mean_error_energy if val else None,
                samples_per_second=sums["samples_now"] / seconds, seconds=seconds)
            self.history.append(metrics)
            done = metrics.error_energy < t.min_err or epoch == t.max_epochs
            self.position = Position(epoch + 1, 0, None, _zero_sums(), finished=done)
            if on_epoch is not None:
                on_epoch(metrics)
            if done:
                break
            if should_stop is not None and self._any_stops(should_stop()):
                raise TrainingStopped(self.position)
        self.position.finished = True
        return self.history

    def _any_stops(self, stop: bool) -> bool:
        """True when this process, or under DDP any process, wants to stop."""
        if self.ctx.distributed:
            return all_reduce_sum([float(stop)], self.ctx)[0] > 0
        return stop

    @torch.no_grad()
    def evaluate(self, images: torch.Tensor, labels: torch.Tensor,
                 batch_size: int = 500) -> Evaluation:
        """:func:`evaluate` of the trained network; under DDP every process takes a share
        and the figures are summed over all of them."""
        with self._autocast():
            return evaluate(self.model, self.coding, images, labels, batch_size, self.device,
                            self.ctx)


@torch.no_grad()
def evaluate(model: PatchNet, coding: Coding, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 500, device: str | torch.device = "cpu",
             ctx: Context | None = None) -> Evaluation:
    """Accuracy, mean error energy and confusion matrix of ``model`` on a labelled set.

    With a distributed ``ctx`` each process evaluates samples ``rank, rank + W, ...``; the
    accuracy, error energy and confusion matrix cover the whole set, ``predictions`` and
    ``scores`` only this process's share.
    """
    if ctx is not None and ctx.distributed:
        images, labels = images[ctx.rank::ctx.world_size], labels[ctx.rank::ctx.world_size]
    model.eval()
    k = model.num_classes
    preds, scores, energy = [], [], 0.0
    for i in range(0, len(labels), batch_size):
        x = images[i:i + batch_size].to(device)
        y = labels[i:i + batch_size].to(device)
        spikes = model(x).spikes.float()
        s = coding.scores(spikes)
        scores.append(s.cpu())
        preds.append(s.argmax(1).cpu())
        energy += float(coding.error_energy(spikes, y).sum())
    predictions = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.int64)
    scores_t = torch.cat(scores) if scores else torch.zeros(0, k)
    confusion = torch.zeros(k, k, dtype=torch.int64)
    confusion.index_put_((labels.cpu(), predictions), torch.ones_like(predictions),
                         accumulate=True)
    if ctx is not None and ctx.distributed:
        confusion = all_reduce_tensor(confusion.to(ctx.device), ctx).cpu()
        energy = all_reduce_sum([energy], ctx)[0]
    n = max(1, int(confusion.sum()))
    return Evaluation(accuracy=float(confusion.trace()) / n,
                      mean_error_energy=energy / n, confusion=confusion.tolist(),
                      predictions=predictions, scores=scores_t)


@torch.no_grad()
def predict(model: PatchNet, coding: Coding, images: torch.Tensor,
            device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes ``(N,)`` and scores ``(N, K)`` (counts, or minus target distances)."""
    model.eval()
    spikes = model(images.to(device)).spikes
    scores = coding.scores(spikes)
    return scores.argmax(1).cpu(), scores.cpu()
