"""Downloads of data set files into lifnet's cache: mirrors, SHA-256 checks, retries.

A file is fetched from the first mirror that gives it whole: each mirror is tried up to
``retries`` times when the connection fails or breaks off, then the next one. The bytes go
to a temporary file beside the destination (``.NAME.*.part``) while their SHA-256 is
computed; only a file whose size and SHA-256 are right is renamed into place, so the cache
never holds half a file or a file with the wrong content. A file refused for its checksum
is not kept, and the mirror that served it is not asked again.

Mirrors are URLs of folders that hold the files under their usual names; ``{dataset}`` in a
mirror is replaced by the data set's name (``mnist``, ``fashion-mnist``), so one mirror can
serve several sets. lifnet ships no mirror address: give them with ``data.mirrors`` (commas
between them) or ``$LIFNET_MIRRORS`` (commas or spaces), e.g.
``LIFNET_MIRRORS=https://example.org/datasets/{dataset}/``. ``http``, ``https`` and
``file`` URLs are accepted.

The library prints nothing: progress reaches the caller through ``progress(name, done,
total)`` (bytes so far, and the size when the server told it, else None).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, DataError

Progress = Callable[[str, int, "int | None"], None]
CHUNK = 1 << 16


class DownloadError(DataError):
    """No mirror gave a whole file with the right checksum."""


@dataclass(frozen=True)
class FileSpec:
    """One file of a data set as the mirrors serve it: name, SHA-256 and size in bytes."""

    name: str
    sha256: str
    size: int | None = None


#: The files of each downloadable set, as first published (gzipped IDX).
FILES: dict[str, tuple[FileSpec, ...]] = {
    "mnist": (
        FileSpec("train-images-idx3-ubyte.gz",
                 "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
        FileSpec("train-labels-idx1-ubyte.gz",
                 "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
        FileSpec("t10k-images-idx3-ubyte.gz",
                 "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
        FileSpec("t10k-labels-idx1-ubyte.gz",
                 "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
    ),
    "fashion-mnist": (
        FileSpec("train-images-idx3-ubyte.gz",
                 "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
        FileSpec("train-labels-idx1-ubyte.gz",
                 "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
        FileSpec("t10k-images-idx3-ubyte.gz",
                 "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
        FileSpec("t10k-labels-idx1-ubyte.gz",
                 "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
    ),
}


def cache_dir() -> Path:
    """lifnet's cache folder: ``$LIFNET_CACHE``, else ``$XDG_CACHE_HOME/lifnet``, else
    ``~/.cache/lifnet``."""
    if os.environ.get("LIFNET_CACHE"):
        return Path(os.environ["LIFNET_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lifnet"


def mirror_list(configured: str | Sequence[str] | None = None) -> list[str]:
    """The mirrors to try: ``configured`` (a list, or text with commas or spaces between
    URLs), else ``$LIFNET_MIRRORS``; each checked for its scheme."""
    if configured is None or configured == "":
        configured = os.environ.get("LIFNET_MIRRORS", "")
    items = re.split(r"[,\s]+", configured) if isinstance(configured, str) else configured
    mirrors = [m.strip() for m in items if m and m.strip()]
    for m in mirrors:
        if not re.match(r"(?i)^(https?|file)://", m):
            raise ConfigError(f"data.mirrors: {m!r} is not a URL: accepted: http://, https:// "
                              "or file:// URLs of folders")
    return mirrors


def file_url(mirror: str, dataset: str, filename: str) -> str:
    """The URL of ``filename`` on ``mirror`` (``{dataset}`` replaced by the set's name)."""
    return mirror.replace("{dataset}", dataset).rstrip("/") + "/" + filename


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class _Refused(Exception):
    """A mirror answered, and what it gave is wrong: do not ask it again."""


def _fetch_once(url: str, spec: FileSpec, folder: Path, timeout: float,
                progress: Progress | None) -> Path:
    """Stream ``url`` into a temporary file in ``folder``; check it; return its path."""
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{spec.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest, done = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else spec.size
                if progress:
                    progress(spec.name, 0, total)
                while True:
                    block = response.read(CHUNK)
                    if not block:
                        break
                    out.write(block)
                    digest.update(block)
                    done += len(block)
                    if progress:
                        progress(spec.name, done, total)
                if length and length.isdigit() and done != int(length):
                    raise ConnectionError(f"connection closed after {done} of {length} bytes")
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if got != spec.sha256:
            raise _Refused(f"SHA-256 {got[:16]}... of {done} bytes, expected "
                           f"{spec.sha256[:16]}...")
        return tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def download_file(spec: FileSpec, urls: Sequence[str], dest: str | Path,
                  progress: Progress | None = None, retries: int = 3, timeout: float = 30.0,
                  backoff: float = 0.5) -> Path:
    """Download one file to ``dest`` from the first of ``urls`` that gives it whole.

    Parameters
    ----------
    spec : FileSpec
        The file's name and SHA-256 (and size, used for progress when the server gives none).
    urls : sequence of str
        Full URLs of the file, tried in order.
    dest : path
        Where the file goes; its folder must exist.
    progress : callable, optional
        ``progress(name, bytes_done, bytes_total_or_None)``.
    retries : int
        Attempts per URL when the connection fails or breaks off.
    timeout : float
        Seconds to wait on a silent connection.
    backoff : float
        Seconds before the second attempt, doubled before each further one.

    Raises
    ------
    DownloadError
        When no URL gave the file whole with the right SHA-256; nothing is left at ``dest``.
    """
    dest = Path(dest)
    faults = []
    for url in urls:
        for attempt in range(1, max(1, retries) + 1):
            try:
                tmp = _fetch_once(url, spec, dest.parent, timeout, progress)
            except _Refused as e:
                faults.append(f"{url}: {e}")
                break
            except urllib.error.HTTPError as e:
                faults.append(f"{url}: HTTP {e.code} {e.reason}")
                if e.code < 500:
                    break
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError,
                    TimeoutError, OSError, ValueError) as e:
                reason = getattr(e, "reason", None) or e
                faults.append(f"{url}: {reason}")
            else:
                os.replace(tmp, dest)
                return dest
            if attempt < retries:
                time.sleep(backoff * 2 ** (attempt - 1))
    last = {}
    for f in faults:            # the last fault of each URL, in the order tried
        last[f.split(": ", 1)[0]] = f
    raise DownloadError(f"{dest.name}: download failed: " + "; ".join(last.values())
                        if last else f"{dest.name}: no mirror to download from")


def fetch_dataset(dataset: str, mirrors: Sequence[str], folder: str | Path | None = None,
                  progress: Progress | None = None, retries: int = 3,
                  timeout: float = 30.0, backoff: float = 0.5) -> Path:
    """Download the files of ``dataset`` missing from ``folder`` (default: the cache's
    ``dataset`` folder) and return that folder.

    A file already there is kept when its SHA-256 is right and fetched again otherwise.
    On failure nothing new is left in the folder, and a folder this call made is removed
    again if it stays empty.
    """
    if dataset not in FILES:
        raise DataError(f"{dataset}: no download known: accepted: {', '.join(FILES)}")
    if not mirrors:
        raise DownloadError(f"{dataset}: no mirror to download from (set data.mirrors or "
                            "$LIFNET_MIRRORS)")
    folder = Path(folder) if folder else cache_dir() / dataset
    made = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"{folder}: cannot make the cache folder: {e.strerror}")
    try:
        for spec in FILES[dataset]:
            dest = folder / spec.name
            if dest.is_file() and sha256_of(dest) == spec.sha256:
                continue
            urls = [file_url(m, dataset, spec.name) for m in mirrors]
            download_file(spec, urls, dest, progress, retries, timeout, backoff)
    except BaseException:
        if made:
            try:
                folder.rmdir()
            except OSError:
                pass        # files of this call are whole and checked; keep them
        raise
    return folder
