"""``lifnet predict``: classes of image files, per-class counts or distances, JSON, raster."""

import json

import numpy as np
import pytest
from datahelpers import assert_one_line_error, isolated, run_cli
from PIL import Image
from test_images import photo_like

from lifnet.checkpoint import save_model
from lifnet.cli import main
from lifnet.config import preset_config
from lifnet.data import load_dataset, to_tensors
from lifnet.training import build, predict

pytestmark = pytest.mark.usefixtures("isolated")
assert isolated


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small network trained for two epochs on 1,500 mnist-5k digits (rate coding)."""
    run = tmp_path_factory.mktemp("predict") / "run"
    code = main(["train", "--quiet", "--out", str(run), "--epochs", "2",
                 "--set", "data.train_limit=1500", "--set", "data.test_limit=100",
                 "--set", "network.channels=4", "--set", "network.steps=15",
                 "--set", "training.validation_fraction=0"])
    assert code == 0
    return run


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("mnist-5k")
    # the first three test digits of each class
    rows = [int(r) for c in range(10) for r in np.flatnonzero(ds.test_labels == c)[:3]]
    return ds.test_images[rows], ds.test_labels[rows]


def write_digits(folder, images, photo):
    paths = []
    for i, img in enumerate(images):
        p = folder / (f"photo-{i}.png" if photo else f"digit-{i}.png")
        Image.fromarray(photo_like(img, 300, i) if photo else img).save(p)
        paths.append(p)
    return paths


def test_grey_and_photo_like_pngs_get_the_networks_classes(trained, digits, tmp_path, capsys):
    images, labels = digits
    from lifnet.checkpoint import load_model
    from lifnet.coding import Coding

    model, cfg, _ = load_model(trained)
    coding = Coding(cfg.coding, cfg.network.steps, cfg.network.num_classes)
    x, _ = to_tensors(images, labels)
    direct, _ = predict(model, coding, x)

    grey = write_digits(tmp_path, images, photo=False)
    code, out, err = run_cli(capsys, "predict", trained, *grey, "--json")
    assert code == 0, err
    got = json.loads(out)
    classes = [int(p["class"]) for p in got["predictions"]]
    # a 28 x 28 grey PNG is exactly the data set's digit: the same class as the network gives
    assert classes == direct.tolist()
    # a small network trained briefly: at least half right (chance: 1 in 10)
    assert sum(c == y for c, y in zip(classes, labels.tolist())) >= 15, (classes, labels)

    photos = write_digits(tmp_path, images, photo=True)
    code, out, err = run_cli(capsys, "predict", trained, *photos, "--json")
    assert code == 0, err
    photo_classes = [int(p["class"]) for p in json.loads(out)["predictions"]]
    # the photo-like 300 x 300 RGB versions get the grey originals' classes wherever the
    # network is sure of them (a lead of 2 spikes or more), and mostly elsewhere too (this
    # small network counts only a few spikes, so near-ties flip on any change of pixels)
    grey_counts = [sorted(p["spike_counts"].values()) for p in got["predictions"]]
    sure = [i for i, c in enumerate(grey_counts) if c[-1] - c[-2] >= 2]
    assert len(sure) >= 5
    assert [photo_classes[i] for i in sure] == [classes[i] for i in sure]
    assert sum(a == b for a, b in zip(photo_classes, classes)) >= 22, (photo_classes, classes)


def test_text_output_and_json_fields(trained, digits, tmp_path, capsys):
    (path,) = write_digits(tmp_path, digits[0][:1], photo=True)
    code, out, err = run_cli(capsys, "predict", trained, path)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert "output spikes per class over 15 steps of 1.0 ms" in lines[0]
    assert lines[1].startswith(f"{path}: ") and "0: " in lines[1] and "9: " in lines[1]
    code, out, err = run_cli(capsys, "predict", trained, path, "--json")
    got = json.loads(out)
    assert got["decoding"] == "most spikes" and got["class_names"] == [str(d) for d in range(10)]
    (p,) = got["predictions"]
    counts = p["spike_counts"]
    assert list(counts) == got["class_names"]
    assert all(0 <= v <= 10 for v in counts.values())
    best = max(counts.values())
    assert counts[p["class"]] == best and int(p["class"]) == p["class_index"]
    assert "distances" not in p


def test_plot_writes_the_raster_png(trained, digits, tmp_path, capsys):
    paths = write_digits(tmp_path, digits[0][:2], photo=False)
    plot = tmp_path / "raster.png"
    code, out, err = run_cli(capsys, "predict", trained, *paths, "--plot", plot)
    assert code == 0, err
    assert f"-> {plot}" in out
    with Image.open(plot) as img:
        assert img.format == "PNG" and img.size[0] >= 400 and img.size[1] >= 200
        # something was drawn: more than one colour
        assert len(img.convert("L").getcolors(1 << 16)) > 2


def _window_run(tmp_path, class_names):
    cfg = preset_config("notebook").with_updates({
        "network.steps": 12, "network.channels": 2, "coding.target_spikes": 1,
        "network.num_classes": len(class_names),
        "network.output_synapse": "dense"}).validate()
    model, _ = build(cfg, (28, 28))
    run = tmp_path / "window-run"
    run.mkdir()
    save_model(run / "model.safetensors", model, cfg, class_names, 0)
    return run


def test_window_coding_gives_distances_and_folder_class_names(tmp_path, digits, capsys):
    run = _window_run(tmp_path, ["cat", "dog", "owl"])
    (path,) = write_digits(tmp_path, digits[0][:1], photo=True)
    code, out, err = run_cli(capsys, "predict", run, path, "--json", "--plot",
                             tmp_path / "w.png")
    assert code == 0, err
    got = json.loads(out)
    (p,) = got["predictions"]
    assert got["decoding"] == "nearest target" and got["class_names"] == ["cat", "dog", "owl"]
    assert list(p["distances"]) == ["cat", "dog", "owl"]
    nearest = min(p["distances"], key=lambda n: (p["distances"][n],
                                                 ["cat", "dog", "owl"].index(n)))
    assert p["class"] == nearest
    assert (tmp_path / "w.png").stat().st_size > 1000
    code, out, err = run_cli(capsys, "predict", run, path)
    assert "distance to each class's target" in out and "cat: " in out


def test_bad_images_and_arguments_are_one_line_errors(trained, digits, tmp_path, capsys):
    good = write_digits(tmp_path, digits[0][:1], photo=False)[0]
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    for args, words in [
        ((good, fake), ["fake.png: "]),
        ((good, tmp_path / "gone.jpg"), ["gone.jpg: file not found"]),
        ((good, "--plot", tmp_path / "r.svg"), ["--plot", "accepted: a file name ending in .png"]),
    ]:
        code, out, err = run_cli(capsys, "predict", trained, *args)
        assert_one_line_error(code, err, *words)
        assert out == ""
    code, _, err = run_cli(capsys, "predict", tmp_path / "no-run", good)
    assert_one_line_error(code, err, "no-run: not a run folder")
    assert not (tmp_path / "r.svg").exists()

