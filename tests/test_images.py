"""A user's own images: the preprocessing, every mode, and bad or huge files."""

import json

import numpy as np
import pytest
from datahelpers import assert_one_line_error, isolated, png_bytes, run_cli
from PIL import Image

from lifnet import DataError
from lifnet.checkpoint import read_safetensors
from lifnet.data import load_dataset
from lifnet.data.images import MAX_PIXELS, background_level, load_image, load_image_folder

pytestmark = pytest.mark.usefixtures("isolated")
assert isolated


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("mnist-5k")
    return ds.test_images, ds.test_labels


def photo_like(digit: np.ndarray, side: int = 300, seed: int = 0) -> np.ndarray:
    """A dark digit on light, tinted, uneven paper with noise: uint8 RGB (side, side, 3)."""
    rng = np.random.default_rng(seed)
    big = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC),
                     dtype=np.float64) / 255.0
    shade = np.linspace(0.92, 0.80, side)[None, :, None]           # light falls off
    paper = np.array([245.0, 238.0, 220.0])[None, None, :] * shade
    ink = np.array([30.0, 35.0, 60.0])[None, None, :]
    rgb = paper * (1 - big[..., None]) + ink * big[..., None]
    rgb += rng.normal(0, 5, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def corr(a, b):
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def test_a_28x28_grey_digit_passes_unchanged(tmp_path, digits):
    images, _ = digits
    for i in range(50):
        Image.fromarray(images[i]).save(tmp_path / "d.png")
        got = load_image(tmp_path / "d.png")
        if images[i].max() == 255:
            assert np.array_equal(got, images[i])
        else:               # stretched to 255: within a level or so
            assert np.abs(got.astype(int) - images[i]).max() <= 255 - images[i].max() + 1


def test_a_photo_like_300x300_rgb_digit_on_paper_becomes_the_digit(tmp_path, digits):
    images, _ = digits
    for i in range(5):
        Image.fromarray(photo_like(images[i], seed=i)).save(tmp_path / "p.png")
        out = load_image(tmp_path / "p.png")
        assert out.shape == (28, 28) and out.dtype == np.uint8
        assert corr(out, images[i]) > 0.97
        assert background_level(out.astype(np.float32)) < 10      # inverted: black ground
        # and as a JPEG (lossy) too
        Image.fromarray(photo_like(images[i], seed=i)).save(tmp_path / "p.jpg", quality=85)
        assert corr(load_image(tmp_path / "p.jpg"), images[i]) > 0.95


def test_other_sizes_keep_the_aspect_ratio(tmp_path):
    wide = np.zeros((20, 80), np.uint8)
    wide[8:12, :] = 255                                 # a bar across the whole width
    Image.fromarray(wide).save(tmp_path / "w.png")
    out = load_image(tmp_path / "w.png")
    rows = np.flatnonzero(out.max(1) > 128)
    assert rows.min() >= 11 and rows.max() <= 16        # padded above and below, centred
    assert (out[:, 0] > 128).any() and (out[:, -1] > 128).any()
    assert load_image(tmp_path / "w.png", (16, 12)).shape == (16, 12)


@pytest.mark.parametrize("mode", ["RGBA dark strokes", "RGBA light strokes", "LA",
                                  "palette", "palette+transparency", "16-bit", "1-bit",
                                  "CMYK jpeg", "32-bit int", "float"])
def test_modes_are_converted(tmp_path, digits, mode):
    digit = digits[0][3]
    ink = digit.astype(np.float64) / 255
    path = tmp_path / "x.png"
    if mode == "RGBA dark strokes":        # black strokes on a transparent sheet
        rgba = np.zeros((28, 28, 4), np.uint8)
        rgba[..., 3] = digit
        Image.fromarray(rgba, "RGBA").save(path)
    elif mode == "RGBA light strokes":
        rgba = np.full((28, 28, 4), 255, np.uint8)
        rgba[..., 3] = digit
        Image.fromarray(rgba, "RGBA").save(path)
    elif mode == "LA":
        la = np.stack([np.zeros_like(digit), digit], -1)
        Image.fromarray(la, "LA").save(path)
    elif mode == "palette":
        Image.fromarray(255 - digit).convert("RGB").quantize(16).save(path)
    elif mode == "palette+transparency":
        img = Image.fromarray(np.where(digit > 127, 0, 255).astype(np.uint8)).convert("P")
        img.info["transparency"] = 255
        img.save(path, transparency=255)
    elif mode == "16-bit":
        Image.fromarray((ink * 65535).astype(np.uint16)).save(path)
        assert Image.open(path).mode.startswith("I")
    elif mode == "1-bit":
        Image.fromarray(digit > 127).save(path)
    elif mode == "CMYK jpeg":
        path = tmp_path / "x.jpg"
        Image.fromarray(255 - digit).convert("CMYK").save(path, quality=95)
    elif mode == "32-bit int":
        path = tmp_path / "x.tif"
        Image.fromarray((ink * 1000).astype(np.int32)).save(path)
    elif mode == "float":
        path = tmp_path / "x.tif"
        Image.fromarray(ink.astype(np.float32)).save(path)
    out = load_image(path)
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert corr(out, digit) > 0.9, mode
    assert out.max() == 255 and np.median(out) < 20


def test_not_an_image_and_truncated_png_are_named(tmp_path, digits):
    fake = tmp_path / "notes.png"
    fake.write_text("these are my notes, not a picture\n")
    with pytest.raises(DataError, match=r"notes.png: not an image"):
        load_image(fake)
    Image.fromarray(photo_like(digits[0][0])).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"t.png: cannot decode the image \(truncated or "):
        load_image(tmp_path / "t.png")
    with pytest.raises(DataError, match=r"gone.png: file not found"):
        load_image(tmp_path / "gone.png")


def test_huge_images_are_refused_before_decoding(tmp_path):
    # a real, valid 20,000 x 20,000 PNG (1 bit per pixel, rows of zeros): 400 megapixels
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bytes(20000, 20000))
    assert bomb.stat().st_size < 200_000
    with pytest.raises(DataError, match=r"bomb.png: image of 400,000,000 pixels is too large "
                       r".*accepted: at most 50,000,000 pixels"):
        load_image(bomb)
    # above lifnet's limit but below Pillow's own: lifnet's check names the size
    big = tmp_path / "big.png"
    big.write_bytes(png_bytes(8000, 8000))
    assert 8000 * 8000 > MAX_PIXELS
    with pytest.raises(DataError, match=r"big.png: image of 8000 x 8000 pixels is too large"):
        load_image(big)


# -- folder: data sets -------------------------------------------------------------------


def make_folder(root, digits, classes=(0, 1, 7), per_class=10, layout="flat"):
    """Class folders of mixed files: PNG and JPEG, grey, RGB photo-like, RGBA, any size."""
    images, labels = digits
    for c in classes:
        rows = np.flatnonzero(labels == c)[:per_class]
        for j, r in enumerate(rows):
            split = ("test" if j % 5 == 4 else "train") if layout == "split" else None
            folder = root / split / f"digit-{c}" if split else root / f"digit-{c}"
            folder.mkdir(parents=True, exist_ok=True)
            kind = j % 4
            if kind == 0:
                Image.fromarray(images[r]).save(folder / f"{j:03d}.png")
            elif kind == 1:
                Image.fromarray(photo_like(images[r], 120, j)).save(folder / f"{j:03d}.jpg")
            elif kind == 2:
                rgba = np.zeros((56, 56, 4), np.uint8)
                rgba[..., 3] = np.asarray(Image.fromarray(images[r]).resize((56, 56)))
                Image.fromarray(rgba, "RGBA").save(folder / f"{j:03d}.png")
            else:
                Image.fromarray(photo_like(images[r], 300, j)).save(folder / f"{j:03d}.PNG")
    return root


def test_folder_set_classes_split_and_preprocessing(tmp_path, digits):
    root = make_folder(tmp_path / "mine", digits)
    (root / "digit-0" / "README.txt").write_text("skipped")
    (root / "digit-0" / ".hidden.png").write_text("skipped too")
    ds = load_dataset(f"folder:{root}")
    assert ds.class_names == ["digit-0", "digit-1", "digit-7"]
    assert ds.train_images.shape == (24, 28, 28) and ds.test_images.shape == (6, 28, 28)
    assert np.bincount(ds.test_labels).tolist() == [2, 2, 2]
    images, labels = digits
    first = np.flatnonzero(labels == 7)[1]                 # file 001.jpg of digit-7
    got = ds.train_images[ds.train_labels == 2][1]
    assert corr(got, images[first]) > 0.95
    small = load_dataset(f"folder:{root}", image_size=14)
    assert small.train_images.shape == (24, 14, 14)


def test_folder_set_with_train_and_test_folders(tmp_path, digits):
    root = make_folder(tmp_path / "split", digits, layout="split")
    ds = load_image_folder(root)
    assert ds.class_names == ["digit-0", "digit-1", "digit-7"]
    assert len(ds.train_labels) == 24 and len(ds.test_labels) == 6
    (root / "test" / "digit-9").mkdir()
    Image.fromarray(digits[0][0]).save(root / "test" / "digit-9" / "a.png")
    with pytest.raises(DataError, match=r"digit-9: class 'digit-9' is not among the training"):
        load_image_folder(root)


@pytest.mark.parametrize("fault", ["empty folder", "class without images", "one class",
                                   "not an image", "truncated png", "huge image",
                                   "no such folder"])
def test_bad_folder_sets_are_refused_by_name(tmp_path, capsys, digits, fault):
    root = tmp_path / "set"
    if fault == "no such folder":
        words = ["set: no such folder"]
    elif fault == "empty folder":
        root.mkdir()
        words = ["set: no class subfolders"]
    elif fault == "one class":
        make_folder(root, digits, classes=(3,))
        words = ["one class folder (digit-3)", "at least 2"]
    else:
        make_folder(root, digits)
        cls = root / "digit-1"
        if fault == "class without images":
            (root / "digit-5").mkdir()
            (root / "digit-5" / "notes.txt").write_text("no images here")
            words = ["digit-5: class folder with no images"]
        elif fault == "not an image":
            (cls / "005.png").write_bytes(b"GIF89a but not really")
            words = ["005.png: not an image"]
        elif fault == "truncated png":
            data = (cls / "003.PNG").read_bytes()
            (cls / "003.PNG").write_bytes(data[:300])
            words = ["003.PNG: cannot decode the image"]
        elif fault == "huge image":
            (cls / "huge.png").write_bytes(png_bytes(20000, 20000))
            words = ["huge.png: image of 400,000,000 pixels is too large"]
    with pytest.raises(DataError):
        load_dataset(f"folder:{root}")
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--dataset", f"folder:{root}", "--out", out,
                           "--quiet")
    assert_one_line_error(code, err, *words)
    assert not out.exists()


def test_training_on_a_folder_sets_the_classes_and_saves_their_names(tmp_path, capsys, digits):
    root = make_folder(tmp_path / "mine", digits, per_class=5)
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "train", "--dataset", f"folder:{root}", "--out", out,
                                "--set", "network.steps=4", "--set", "network.channels=1",
                                "--epochs", "1", "--set", "training.validation_fraction=0")
    assert code == 0, err
    assert "network.num_classes = 3" in stdout
    _, meta = read_safetensors(out / "model.safetensors")
    assert json.loads(meta["class_names"]) == ["digit-0", "digit-1", "digit-7"]
    result = json.loads((out / "result.json").read_text())
    assert result["class_names"] == ["digit-0", "digit-1", "digit-7"]
    assert len(result["confusion"]) == 3 and result["test_samples"] == 3
    code, stdout, err = run_cli(capsys, "evaluate", out, "--json")
    assert code == 0, err
    assert json.loads(stdout)["class_names"] == ["digit-0", "digit-1", "digit-7"]
