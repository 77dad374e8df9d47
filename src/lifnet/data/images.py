"""A user's own images: reading, the one preprocessing function, and class folders.

Preprocessing (:func:`prepare`, used alike for ``folder:PATH`` training sets and by
``lifnet predict``), from any file Pillow reads (PNG, JPEG, BMP, GIF, TIFF, WebP) of any
size and mode to a uint8 ``(H, W)`` array like an MNIST digit, light ink on black:

1. Grey. The first frame; the EXIF orientation applied. Colour is turned into luma
   (ITU-R 601: 0.299 R + 0.587 G + 0.114 B). Palette images are expanded first. 16-bit
   images (``I;16``) are scaled by 255 / 65535; 32-bit integer and float images by their
   range. Transparent parts (RGBA, LA, palette with transparency) are laid on white when the
   opaque part is dark on average and on black when it is light, so drawn strokes stay
   visible either way.
2. Background. The background is taken from a border ring (5 % of the smaller side, at
   least one pixel): its median says whether it is light (above 127.5 of 255), in which
   case the image is inverted, so a dark digit on paper becomes a light digit on black;
   and a plane ``a + b x + c y`` fitted to the ring (least squares, refitted once without
   the pixels far from the first fit, such as strokes that touch the edge) is subtracted,
   which takes away uneven lighting across a photo.
3. Shape. The image is padded with background (0) to the target's aspect ratio (centred),
   then resized to ``H x W`` with Lanczos filtering (antialiased).
4. Scale. The brightest pixel maps to 255, the background to 0 (values below are clipped);
   an image with no contrast comes out all 0.

A 28 x 28 MNIST digit passes through unchanged (its border is black), but for step 4
(most have a brightest pixel of 255 already, some 254).

Huge images. A file whose header announces more than :data:`MAX_PIXELS` pixels (50
megapixels, e.g. 20,000 x 20,000 is 400) is refused with a :class:`DataError` naming the
file and its size before anything is decoded: decoding it would take gigabytes (a
"decompression bomb" is a small file that announces such a size). Shrink such an image
first. JPEG files are decoded at a reduced scale (1/2, 1/4 or 1/8) when that still leaves
four times the target size, which is faster and the same after resizing.

Class folders (:func:`load_image_folder`): ``PATH/<class>/<image>``, one subfolder per
class, class names from the folder names in sorted order. Either ``PATH/train/<class>``
and ``PATH/test/<class>`` (the test folder holding some or all of the training classes),
or the class folders directly, of which every fifth image of each class (in name order:
the 5th, 10th, ...) is held out as the test split. Files whose suffix is not an image's
(``README.txt``) and hidden files are skipped; every image file is read and any that
cannot be raises before a set is returned.
"""

from __future__ import annotations

import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_PIXELS = 50_000_000
TEST_EVERY = 5


def _pil():
    try:
        from PIL import Image, ImageOps
    except ImportError:  # pragma: no cover - Pillow is a dependency
        raise DataError("reading images needs Pillow: pip install pillow")
    return Image, ImageOps


def open_image(path: str | Path, size: tuple[int, int] | None = None):
    """Open and decode an image file with Pillow; faults become :class:`DataError`.

    ``size`` (H, W), when given, lets JPEG files decode at a reduced scale.
    """
    Image, ImageOps = _pil()
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found" if not path.exists()
                        else f"{path}: not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # size and palette warnings: handled below
            img = Image.open(path)
            w, h = img.size
            if w * h > MAX_PIXELS:
                img.close()
                raise DataError(f"{path}: image of {w} x {h} pixels is too large: accepted: "
                                f"at most {MAX_PIXELS:,} pixels (shrink it first)")
            if size is not None and img.format == "JPEG":
                img.draft(img.mode, (4 * size[1], 4 * size[0]))
            img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img)
    except DataError:
        raise
    except Image.DecompressionBombError as e:
        # Pillow's own, higher limit: it names the pixel count in its message
        found = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(found.group(1)):,} pixels" if found else "its size"
        raise DataError(f"{path}: image of {size} is too large (a decompression bomb?): "
                        f"accepted: at most {MAX_PIXELS:,} pixels (shrink it first)")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found")
    except Image.UnidentifiedImageError:
        raise DataError(f"{path}: not an image (no known image format): accepted: PNG, JPEG, "
                        "BMP, GIF, TIFF or WebP")
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error,
            IndexError, TypeError, MemoryError) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{path}: cannot decode the image (truncated or corrupt?): {why}")
    return img


def to_grey(img) -> np.ndarray:
    """Step 1 of the preprocessing: a Pillow image to grey, float32 ``(H, W)`` in 0..255."""
    mode = img.mode
    if mode == "P" or mode == "PA":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode.startswith("I;16"):
        return (np.asarray(img, dtype=np.float32) * (255.0 / 65535.0)).astype(np.float32)
    if mode in ("I", "F"):
        a = np.asarray(img, dtype=np.float64)
        a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(a.min()), float(a.max())
        if mode == "F" and lo >= 0 and hi <= 1:
            lo, hi = 0.0, 1.0
        elif lo >= 0 and hi <= 255:
            lo, hi = 0.0, 255.0
        elif lo >= 0 and hi <= 65535:
            lo, hi = 0.0, 65535.0
        span = hi - lo if hi > lo else 1.0
        return ((a - lo) * (255.0 / span)).astype(np.float32)
    alpha = None
    if mode in ("RGBA", "LA", "La", "RGBa"):
        alpha = np.asarray(img.getchannel("A"), dtype=np.float32) / 255.0
        img = img.convert("RGB")
    elif mode not in ("L", "RGB"):
        img = img.convert("RGB")
    grey = np.asarray(img.convert("L"), dtype=np.float32)
    if alpha is not None and alpha.min() < 1.0:
        weight = float(alpha.sum())
        mean = float((alpha * grey).sum() / weight) if weight > 0 else 0.0
        behind = 255.0 if mean < 127.5 else 0.0
        grey = alpha * grey + (1.0 - alpha) * behind
    return grey


def _ring_mask(h: int, w: int) -> np.ndarray:
    r = max(1, round(0.05 * min(h, w)))
    mask = np.zeros((h, w), dtype=bool)
    mask[:r], mask[-r:], mask[:, :r], mask[:, -r:] = True, True, True, True
    return mask


def background_level(grey: np.ndarray) -> float:
    """Median of the border ring (5 % of the smaller side, at least one pixel)."""
    return float(np.median(grey[_ring_mask(*grey.shape)]))


def background_plane(grey: np.ndarray) -> np.ndarray:
    """The plane ``a + b x + c y`` that fits the border ring best, float32 ``(H, W)``."""
    h, w = grey.shape
    ys, xs = np.nonzero(_ring_mask(h, w))
    vals = grey[ys, xs].astype(np.float64)
    design = np.stack([np.ones_like(xs, dtype=np.float64), xs / max(1, w - 1),
                       ys / max(1, h - 1)], 1)
    coef = np.linalg.lstsq(design, vals, rcond=None)[0]
    resid = vals - design @ coef
    mad = float(np.median(np.abs(resid - np.median(resid))))
    keep = np.abs(resid) <= max(3.0 * 1.4826 * mad, 2.0)
    if keep.sum() >= 3 and not keep.all():
        coef = np.linalg.lstsq(design[keep], vals[keep], rcond=None)[0]
    x = np.arange(w, dtype=np.float64) / max(1, w - 1)
    y = np.arange(h, dtype=np.float64) / max(1, h - 1)
    return (coef[0] + coef[1] * x[None, :] + coef[2] * y[:, None]).astype(np.float32)


def prepare(img, size: tuple[int, int] = (28, 28)) -> np.ndarray:
    """The preprocessing (module docstring): a Pillow image to uint8 ``(H, W)`` = ``size``."""
    Image, _ = _pil()
    out_h, out_w = size
    grey = to_grey(img)
    if background_level(grey) > 127.5:
        grey = 255.0 - grey
    grey = grey - background_plane(grey)
    h, w = grey.shape
    # pad to the target's aspect ratio, centred, with background
    if w * out_h > h * out_w:
        new_h = round(w * out_h / out_w)
        top = (new_h - h) // 2
        grey = np.pad(grey, ((top, new_h - h - top), (0, 0)))
    elif w * out_h < h * out_w:
        new_w = round(h * out_w / out_h)
        left = (new_w - w) // 2
        grey = np.pad(grey, ((0, 0), (left, new_w - w - left)))
    if grey.shape != (out_h, out_w):
        grey = np.asarray(Image.fromarray(np.ascontiguousarray(grey, dtype=np.float32))
                          .resize((out_w, out_h), Image.Resampling.LANCZOS))
    hi = float(grey.max())
    if hi < 1.0:
        return np.zeros((out_h, out_w), dtype=np.uint8)
    scaled = np.clip(grey * (255.0 / hi), 0.0, 255.0)
    return np.rint(scaled).astype(np.uint8)


def load_image(path: str | Path, size: tuple[int, int] = (28, 28)) -> np.ndarray:
    """Read one image file and preprocess it: uint8 ``(H, W)`` = ``size``."""
    img = open_image(path, size)
    try:
        return prepare(img, size)
    except (OSError, ValueError, MemoryError) as e:
        raise DataError(f"{path}: cannot convert the image ({img.mode}, {img.size}): {e}")


def _class_folders(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def _images_in(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.name.startswith(".")
                   and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: class folder with no images: accepted: files ending in "
                        f"{', '.join(IMAGE_SUFFIXES)}")
    return files


def _read_all(files: list[Path], size: tuple[int, int]) -> np.ndarray:
    out = np.zeros((len(files), *size), dtype=np.uint8)
    for i, f in enumerate(files):
        out[i] = load_image(f, size)
    return out


def load_image_folder(root: str | Path, size: tuple[int, int] = (28, 28),
                      name: str | None = None):
    """A :class:`~lifnet.data.DataSet` from class folders of images (module docstring)."""
    from . import DataSet

    root = Path(root)
    name = name or f"folder:{root}"
    if not root.is_dir():
        raise DataError(f"{root}: no such folder: accepted: a folder with one subfolder of "
                        "images per class")
    split = (root / "train").is_dir() and (root / "test").is_dir()
    train_root = root / "train" if split else root
    classes = _class_folders(train_root)
    if not classes:
        raise DataError(f"{train_root}: no class subfolders: accepted: one subfolder of PNG "
                        "or JPEG images per class")
    if len(classes) < 2:
        raise DataError(f"{train_root}: one class folder ({classes[0].name}): accepted: at "
                        "least 2 class subfolders")
    names = [c.name for c in classes]
    train_files, train_labels, test_files, test_labels = [], [], [], []
    for label, folder in enumerate(classes):
        files = _images_in(folder)
        if split:
            train_files += files
            train_labels += [label] * len(files)
        else:
            for i, f in enumerate(files):
                held = (i + 1) % TEST_EVERY == 0
                (test_files if held else train_files).append(f)
                (test_labels if held else train_labels).append(label)
    if split:
        test_classes = _class_folders(root / "test")
        if not test_classes:
            raise DataError(f"{root / 'test'}: no class subfolders: accepted: subfolders "
                            f"named as the training classes ({', '.join(names)})")
        for folder in test_classes:
            if folder.name not in names:
                raise DataError(f"{folder}: class {folder.name!r} is not among the training "
                                f"classes: accepted: {', '.join(names)}")
            files = _images_in(folder)
            test_files += files
            test_labels += [names.index(folder.name)] * len(files)
    data = DataSet(name, _read_all(train_files, size), np.asarray(train_labels, np.int64),
                   _read_all(test_files, size), np.asarray(test_labels, np.int64),
                   class_names=names)
    return data.check()
