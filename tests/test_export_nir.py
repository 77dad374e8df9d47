"""NIR export: the file's structure and units, and snnTorch and Norse running it as lifnet.

The simulators differ from lifnet in integration (Euler), time step, potential origin and
resistance; :func:`lifnet.export.adapt_for_simulator` undoes each difference exactly (see
:mod:`lifnet.export`), after which the output spikes agree.
"""

import contextlib
import io
import logging

import numpy as np
import pytest
import torch

from lifnet.checkpoint import save_model
from lifnet.cli import main
from lifnet.config import preset_config
from lifnet.data import load_dataset, to_tensors
from lifnet.export import ExportError, adapt_for_simulator, simulate, to_nir
from lifnet.training import Trainer, build

nir = pytest.importorskip("nir")


@pytest.fixture(scope="module")
def trained():
    """A small dense-output network trained for one epoch (so its neurons spike)."""
    torch.set_num_threads(1)
    cfg = preset_config("default").with_updates({
        "network.steps": 15, "network.channels": 2, "network.hidden": [32],
        "network.synapse_init": 400.0,
        "training.max_epochs": 1, "training.batch_size": 25, "training.shift": 0,
        "data.train_limit": 300, "data.test_limit": 200}).validate()
    ds = load_dataset("mnist-5k").limit(300, 200)
    x, y = to_tensors(ds.train_images, ds.train_labels)
    model, coding = build(cfg, (28, 28))
    Trainer(cfg, model, coding).fit(x, y)
    tx, ty = to_tensors(ds.test_images, ds.test_labels)
    return cfg, model.eval(), coding, tx, ty


def test_cli_writes_a_nir_file_in_lifnets_units(trained, tmp_path, capsys):
    cfg, model, _, _, _ = trained
    run = tmp_path / "run"
    run.mkdir()
    save_model(run / "model.safetensors", model, cfg, [str(d) for d in range(10)], 1)
    out = tmp_path / "net.nir"
    assert main(["export", str(run), "--format", "nir", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    g = nir.read(str(out))
    assert set(g.nodes) == {"input", "encoding", "encoding_lif", "hidden_0", "hidden_0_lif",
                            "output_synapse", "output_lif", "output"}
    assert ("input", "encoding") in g.edges and ("output_lif", "output") in g.edges
    enc = g.nodes["encoding"]
    assert enc.weight.shape == (576 * 2, 784)
    # every neuron sees its 5 x 5 patch and nothing else: zeros elsewhere
    nonzero = (enc.weight != 0).sum(1)
    assert nonzero.max() <= 25 and nonzero.mean() > 24
    # neuron (p=0, c=1) reads pixels (0..4, 0..4); its weights are gain * w
    row = enc.weight[1].reshape(28, 28)
    w = model.encoding.weight[0, 1].detach().numpy().reshape(5, 5) * cfg.network.encoding_gain
    np.testing.assert_allclose(row[:5, :5], w, rtol=1e-6)
    assert not row[5:].any() and not row[:, 5:].any()
    lif = g.nodes["output_lif"]
    assert lif.tau.shape == (10,)
    assert np.all(lif.tau == 10.0) and np.all(lif.r == 1.0)                 # ms, MOhm
    assert np.all(lif.v_leak == -65.0) and np.all(lif.v_threshold == -50.0)  # mV
    assert np.all(lif.v_reset == -65.0)
    np.testing.assert_array_equal(g.nodes["output_synapse"].weight,
                                  model.output.weight.detach().numpy())
    assert g.metadata["dt_ms"] == 1.0 and g.metadata["steps"] == 15

    # the CLI's refusals: wrong format, missing run
    assert main(["export", str(run), "--format", "onnx", str(out)]) == 2
    assert "--format 'onnx': accepted: nir" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "none"), str(out)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def _run_in(simulator, graph, dt, x, steps):
    adapted = adapt_for_simulator(graph, simulator, dt)
    with contextlib.redirect_stdout(io.StringIO()):     # snnTorch prints its warnings
        if simulator == "snntorch":
            from snntorch.import_nir import import_from_nir

            module = import_from_nir(adapted)
        else:
            import norse.torch

            logging.disable(logging.WARNING)
            try:
                module = norse.torch.from_nir(adapted, dt=dt)
            finally:
                logging.disable(logging.NOTSET)
        return simulate(module, x, steps, simulator)


@pytest.mark.parametrize("simulator", ["snntorch", "norse"])
def test_simulators_reproduce_lifnets_spikes_and_predictions(trained, simulator):
    cfg, model, coding, x, _y = trained
    with torch.no_grad():
        ref = model(x).spikes                                  # (T, B, K)
    assert ref.sum() > 100                                     # the outputs do spike
    graph = to_nir(model)
    spikes = _run_in(simulator, graph, cfg.network.dt, x, cfg.network.steps)
    assert spikes.shape == ref.shape
    same_spikes = float((spikes == ref).float().mean())
    same_pred = float((coding.decode(spikes) == coding.decode(ref)).float().mean())
    assert same_spikes >= 0.999, same_spikes
    assert same_pred >= 0.99, same_pred


def test_without_adaptation_norse_differs(trained):
    """The differences the adaptation undoes are real: on the file as written, Norse
    (v_reset taken as 0 mV, r ignored, Euler steps) does not reproduce lifnet."""
    import norse.torch

    cfg, model, _, x, _ = trained
    with torch.no_grad():
        ref = model(x[:50]).spikes
    logging.disable(logging.WARNING)
    try:
        module = norse.torch.from_nir(to_nir(model), dt=cfg.network.dt)
    finally:
        logging.disable(logging.NOTSET)
    raw = simulate(module, x[:50], cfg.network.steps, "norse")
    assert not torch.equal(raw, ref)


@pytest.mark.parametrize("setting, words", [
    ({"network.output_synapse": "time_indexed"}, ["'time_indexed'", "NIR has no synapse"]),
    ({"network.output_synapse": "time_indexed_integrated"}, ["time_indexed"]),
    ({"neuron.t_ref": 2.0}, ["neuron.t_ref = 2.0 ms", "refractory"]),
    ({"neuron.reset": "subtract"}, ["neuron.reset = 'subtract'"]),
    ({"neuron.v_init": -60.0}, ["neuron.v_init = -60.0 mV"]),
])
def test_what_nir_cannot_express_is_refused(setting, words, tmp_path, capsys):
    cfg = preset_config("default").with_updates({"network.steps": 10, "network.channels": 1,
                                                 **setting}).validate()
    model, _ = build(cfg, (28, 28))
    with pytest.raises(ExportError) as e:
        to_nir(model)
    for word in words:
        assert word in str(e.value)
    run = tmp_path / "run"
    run.mkdir()
    save_model(run / "model.safetensors", model, cfg, [str(d) for d in range(10)], 1)
    assert main(["export", str(run), str(tmp_path / "x.nir")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words[0] in err[0]
    assert not (tmp_path / "x.nir").exists()
