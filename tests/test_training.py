"""Training: repeatability, the stopping rule, one learning rate per layer."""

import torch

from lifnet.config import preset_config
from lifnet.data import load_dataset, to_tensors
from lifnet.training import Trainer, build, make_optimizer


def _small(preset="default", **training):
    cfg = preset_config(preset).with_updates({
        "network.steps": 10, "network.channels": 1, "network.hidden": [],
        "training.max_epochs": 1, "training.batch_size": 50,
        **{f"training.{k}": v for k, v in training.items()}})
    if preset == "notebook":
        cfg = cfg.with_updates({"network.steps": 20, "coding.target_spikes": 1})
    ds = load_dataset("mnist-5k").limit(200, 100)
    x, y = to_tensors(ds.train_images, ds.train_labels)
    return cfg.validate(), x, y


def _train(cfg, x, y):
    model, coding = build(cfg, (28, 28))
    trainer = Trainer(cfg, model, coding)
    history = trainer.fit(x, y)
    return model, history


def test_same_seed_gives_identical_weights():
    cfg, x, y = _small(seed=7)
    a, _ = _train(cfg, x, y)
    b, _ = _train(cfg, x, y)
    c, _ = _train(cfg.with_updates({"training.seed": 8}), x, y)
    for (name, pa), pb, _pc in zip(a.state_dict().items(), b.state_dict().values(),
                                  c.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_training_changes_weights_and_learns_something():
    cfg, x, y = _small(max_epochs=3)
    _model, history = _train(cfg, x, y)
    assert len(history) == 3
    assert history[-1].loss < history[0].loss


def test_min_err_stops_early():
    cfg, x, y = _small(max_epochs=5, min_err=1e9)
    _, history = _train(cfg, x, y)
    assert len(history) == 1


def test_one_learning_rate_per_layer():
    cfg, _, _ = _small("notebook", optimizer="sgd", encoding_lr=0.5, output_lr=0.25)
    model, _ = build(cfg, (28, 28))
    opt = make_optimizer(model, cfg)
    rates = {g["name"]: g["lr"] for g in opt.param_groups}
    assert rates == {"encoding": 0.5, "output": 0.25}
    assert isinstance(opt, torch.optim.SGD)


def test_an_epoch_resumed_counts_only_the_samples_run_since():
    from lifnet.training import TrainingStopped
    cfg, x, y = _small()
    model, coding = build(cfg, (28, 28))
    trainer = Trainer(cfg, model, coding)
    calls = []
    try:                                       # stop after the first of 4 batches
        trainer.fit(x, y, should_stop=lambda: calls.append(1) or True)
    except TrainingStopped as stop:
        position = stop.position
    assert position.batch == 1
    sums = trainer.train_epoch(1, x, y)        # the other 3 batches of 50
    assert sums["samples"] == 200 and sums["samples_now"] == 150


def test_a_shift_as_large_as_the_image_is_refused():
    import pytest

    from lifnet.errors import ConfigError
    cfg, _, _ = _small(shift=28)
    model, coding = build(cfg, (28, 28))
    with pytest.raises(ConfigError, match=r"training\.shift = 28 is out of range.*< 28 px"):
        Trainer(cfg, model, coding)
