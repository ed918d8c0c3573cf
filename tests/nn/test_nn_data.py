"""sgdsde.nn.data: loaders on IDX and CIFAR-binary files written here, rejection of
malformed files, splits, subsets, exact label corruption, built-in data."""

import gzip
import re
import struct
import sys
import warnings

import jax
import numpy as np
import pytest

from sgdsde.nn import data

KEY = jax.random.key(0)


# ------------------------------------------------------------------ IDX files
def _idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """The IDX format written by hand (independently of the reader): 0, 0, type code,
    rank, big-endian int32 dimensions, big-endian data."""
    dtype = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[code]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.asarray(array, dtype).tobytes()


def _write(path, payload: bytes, gz: bool):
    path.write_bytes(gzip.compress(payload) if gz else payload)


def _mnist_folder(folder, rng, n_train=12, n_test=5, gz=True, dotted=False):
    """Small MNIST-format files; returns the arrays written."""
    arrays = {}
    for stem, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        arrays[stem] = (images, labels)
        sep = "." if dotted else "-"
        ext = ".gz" if gz else ""
        _write(folder / f"{stem}-images{sep}idx3-ubyte{ext}", _idx_bytes(images), gz)
        _write(folder / f"{stem}-labels{sep}idx1-ubyte{ext}", _idx_bytes(labels), gz)
    return arrays


@pytest.mark.parametrize("gz, dotted", [(True, False), (False, False), (False, True)], ids=["gz", "raw", "dotted"])
def test_mnist_loader_reads_idx_files(tmp_path, gz, dotted):
    arrays = _mnist_folder(tmp_path, np.random.default_rng(1), gz=gz, dotted=dotted)
    splits = data.load_mnist(tmp_path)
    assert splits.validation is None
    for part, stem in ((splits.train, "train"), (splits.test, "t10k")):
        images, labels = arrays[stem]
        assert part.x.shape == images.shape + (1,) and part.x.dtype == np.float32
        np.testing.assert_array_equal(part.x[..., 0] * 255.0, images)  # k/255·255 is exact to 1 ulp
        np.testing.assert_array_equal(part.y, labels)
        assert part.num_classes == 10 and part.name == "mnist"
    assert splits.train.split == "train" and splits.test.split == "test"
    fashion = data.load_fashion_mnist(tmp_path)
    assert fashion.train.name == "fashion_mnist"
    np.testing.assert_array_equal(fashion.test.y, arrays["t10k"][1])


def test_read_idx_other_types_and_native_order(tmp_path):
    values = np.arange(-6, 6, dtype=np.int16).reshape(3, 4)
    (tmp_path / "a.idx").write_bytes(_idx_bytes(values, 0x0B))
    out = data.read_idx(tmp_path / "a.idx")
    assert out.dtype == np.int16 and out.dtype.isnative
    np.testing.assert_array_equal(out, values)
    floats = np.linspace(0, 1, 5).astype(np.float32)
    (tmp_path / "b.idx.gz").write_bytes(gzip.compress(_idx_bytes(floats, 0x0D)))
    np.testing.assert_array_equal(data.read_idx(tmp_path / "b.idx.gz"), floats)


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"\x01\x00\x08\x01" + struct.pack(">I", 3) + b"abc", "first two bytes"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 3) + b"abc", "type code 0x07"),
        (b"\x00\x00\x08\x02" + struct.pack(">I", 3), "truncated header"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 4) + b"abc", "header says shape"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 2) + b"abc", "the file has 11"),
        (b"\x1f\x8bnot really gzip", "malformed gzip"),
    ],
    ids=["magic", "type", "header", "short", "long", "gzip"],
)
def test_read_idx_rejects_malformed_files(tmp_path, payload, message):
    (tmp_path / "bad").write_bytes(payload)
    with pytest.raises(ValueError, match=message):
        data.read_idx(tmp_path / "bad")


def test_mnist_loader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        data.load_mnist(tmp_path / "nowhere")
    rng = np.random.default_rng(2)
    _mnist_folder(tmp_path, rng, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="mnist test labels"):
        data.load_mnist(tmp_path)
    # counts that disagree, and labels out of range
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(ValueError, match="5 images but 4 labels"):
        data.load_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.array([0, 1, 2, 3, 10], np.uint8)))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\), found 10"):
        data.load_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros((5, 2), np.uint8)))
    with pytest.raises(ValueError, match="expected uint8 labels"):
        data.load_mnist(tmp_path)


# ---------------------------------------------------------------- CIFAR files
def _cifar_records(rng, n, label_columns):
    """Binary CIFAR records: label byte(s), then 1024 red, 1024 green, 1024 blue bytes
    (each a row-major 32×32 plane). Returns (bytes, NHWC images, labels per column)."""
    images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    labels = [rng.integers(0, top, size=n, dtype=np.uint8) for top in label_columns]
    planes = images.transpose(0, 3, 1, 2).reshape(n, 3072)  # channel-major, as stored
    records = np.concatenate([np.stack(labels, 1), planes], axis=1)
    return records.tobytes(), images, labels


def test_cifar10_loader(tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / "cifar-10-batches-bin"  # the loader also looks in this subfolder
    folder.mkdir()
    train_images, train_labels = [], []
    for i in range(1, 6):
        raw, images, (labels,) = _cifar_records(rng, 2 + i, [10])
        (folder / f"data_batch_{i}.bin").write_bytes(raw)
        train_images.append(images)
        train_labels.append(labels)
    raw, test_images, (test_labels,) = _cifar_records(rng, 4, [10])
    (folder / "test_batch.bin").write_bytes(raw)
    splits = data.load_cifar10(tmp_path)
    assert splits.train.x.shape == (25, 32, 32, 3) and splits.test.x.shape == (4, 32, 32, 3)
    np.testing.assert_array_equal(splits.train.x * 255.0, np.concatenate(train_images))
    np.testing.assert_array_equal(splits.train.y, np.concatenate(train_labels))
    np.testing.assert_array_equal(splits.test.x * 255.0, test_images)
    np.testing.assert_array_equal(splits.test.y, test_labels)
    # malformed: a record cut short; labels out of range; a missing batch
    (folder / "test_batch.bin").write_bytes(raw[:-1])
    with pytest.raises(ValueError, match="not a positive multiple of the 3073-byte record"):
        data.load_cifar10(folder)
    bad = bytearray(raw)
    bad[0] = 10
    (folder / "test_batch.bin").write_bytes(bytes(bad))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\), found 10"):
        data.load_cifar10(folder)
    (folder / "data_batch_3.bin").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3.bin"):
        data.load_cifar10(folder)


def test_cifar100_loader_fine_and_coarse(tmp_path):
    rng = np.random.default_rng(4)
    raw_train, images, (coarse, fine) = _cifar_records(rng, 6, [20, 100])
    raw_test, _, _ = _cifar_records(rng, 3, [20, 100])
    (tmp_path / "train.bin").write_bytes(raw_train)
    (tmp_path / "test.bin").write_bytes(raw_test)
    fine_splits = data.load_cifar100(tmp_path)
    np.testing.assert_array_equal(fine_splits.train.y, fine)
    np.testing.assert_array_equal(fine_splits.train.x * 255.0, images)
    assert fine_splits.train.num_classes == 100 and fine_splits.test.num_examples == 3
    coarse_splits = data.load_cifar100(tmp_path, labels="coarse")
    np.testing.assert_array_equal(coarse_splits.train.y, coarse)
    assert coarse_splits.train.num_classes == 20
    # a CIFAR-10 file (3073-byte records) is not a CIFAR-100 file (3074-byte records)
    (tmp_path / "test.bin").write_bytes(_cifar_records(rng, 3, [10])[0])
    with pytest.raises(ValueError, match="3074-byte record"):
        data.load_cifar100(tmp_path)
    with pytest.raises(ValueError, match="labels: must be 'fine' or 'coarse'"):
        data.load_cifar100(tmp_path, labels="superclass")


def test_load_dispatch_and_unknown_format(tmp_path):
    _mnist_folder(tmp_path, np.random.default_rng(5), n_train=20)
    splits = data.load("mnist", tmp_path, key=KEY, validation=5)
    assert (splits.train.num_examples, splits.validation.num_examples, splits.test.num_examples) == (15, 5, 5)
    assert splits.validation.split == "validation"
    with pytest.raises(ValueError, match="unknown data format 'svhn'"):
        data.load("svhn", tmp_path, key=KEY)
    with pytest.raises(ValueError, match="pass folder="):
        data.load("cifar10", key=KEY)
    with pytest.raises(ValueError, match="reads no folder"):
        data.load("digits", tmp_path, key=KEY)


def _corruptions(payload: bytes) -> dict:
    """A valid gzip stream of ``payload`` damaged three ways, each raising a different
    error inside gzip: cut in half (EOFError), deflate bytes overwritten (zlib.error),
    the CRC trailer zeroed (BadGzipFile)."""
    good = gzip.compress(payload)
    return {
        "truncated": good[: len(good) // 2],
        "deflate": good[:12] + b"\xff" * 30 + good[42:],
        "crc": good[:-8] + b"\x00" * 4 + good[-4:],
    }


@pytest.mark.parametrize("damage", ["truncated", "deflate", "crc"])
def test_corrupt_gzip_files_name_the_file_and_format(tmp_path, damage):
    rng = np.random.default_rng(6)
    arrays = _mnist_folder(tmp_path, rng, gz=True)
    images = tmp_path / "train-images-idx3-ubyte.gz"
    images.write_bytes(_corruptions(_idx_bytes(arrays["train"][0]))[damage])
    with pytest.raises(ValueError, match=re.escape(f"{images}: malformed gzip file, expected a gzipped IDX file")):
        data.load_mnist(tmp_path)
    cifar = tmp_path / "cifar"
    cifar.mkdir()
    raw_train, _, (_, fine) = _cifar_records(rng, 3, [20, 100])
    raw_test = _cifar_records(rng, 2, [20, 100])[0]
    (cifar / "train.bin").write_bytes(gzip.compress(raw_train))  # gzip is detected whatever the name says
    (cifar / "test.bin").write_bytes(raw_test)
    np.testing.assert_array_equal(data.load_cifar100(cifar).train.y, fine)
    (cifar / "test.bin").write_bytes(_corruptions(raw_test)[damage])
    expected = f"{cifar / 'test.bin'}: malformed gzip file, expected a gzipped cifar100_fine binary file"
    with pytest.raises(ValueError, match=re.escape(expected)):
        data.load_cifar100(cifar)


# ------------------------------------------------------ splits and label noise
def test_split_subset_are_disjoint_and_deterministic():
    full = data.gaussian_mixture(100, 3, 4, key=KEY)
    a = data.split(full, key=jax.random.key(1), validation=0.1, test=25)
    b = data.split(full, key=jax.random.key(1), validation=0.1, test=25)
    sizes = [s.num_examples for s in a]
    assert sizes == [65, 10, 25]
    # the three splits partition the examples (rows of x identify them: continuous draws)
    rows = np.concatenate([s.x for s in a])
    assert np.unique(rows, axis=0).shape[0] == 100
    for s, t in zip(a, b):
        np.testing.assert_array_equal(s.x, t.x)
    c = data.split(full, key=jax.random.key(2), validation=0.1, test=25)
    assert not np.array_equal(a.train.x, c.train.x)
    first = data.subset(full, 7)
    np.testing.assert_array_equal(first.x, full.x[:7])
    rand = data.subset(full, 7, key=KEY)
    assert rand.num_examples == 7 and np.unique(rand.x, axis=0).shape[0] == 7
    assert all(np.any(np.all(full.x == row, axis=1)) for row in rand.x)
    with pytest.raises(ValueError, match="101 requested"):
        data.subset(full, 101)
    with pytest.raises(ValueError, match="leaves no training examples"):
        data.split(full, key=KEY, validation=50, test=50)
    with pytest.raises(ValueError, match="key: a JAX PRNG key is required"):
        data.split(full, key=None)


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 1.0])
def test_corrupt_labels_exact_fraction(fraction):
    clean = data.gaussian_mixture(203, 2, 5, key=KEY)
    noisy = data.corrupt_labels(clean, fraction, key=jax.random.key(9))
    count = round(fraction * 203)
    assert noisy.corrupted.sum() == count
    # exactly the marked labels changed, to another valid class; the clean labels are kept
    assert np.sum(noisy.y != clean.y) == count
    np.testing.assert_array_equal(noisy.y != clean.y, noisy.corrupted)
    np.testing.assert_array_equal(noisy.original_y, clean.y)
    assert noisy.y.min() >= 0 and noisy.y.max() < 5
    np.testing.assert_array_equal(noisy.x, clean.x)
    again = data.corrupt_labels(clean, fraction, key=jax.random.key(9))
    np.testing.assert_array_equal(again.y, noisy.y)
    # the record follows the examples through splits and subsets
    parts = data.split(noisy, key=KEY, validation=0.2, test=0.2)
    assert sum(int(p.corrupted.sum()) for p in parts) == count
    for p in parts:
        np.testing.assert_array_equal(p.y != p.original_y, p.corrupted)


def test_corrupted_labels_are_uniform_over_the_other_classes():
    # 4000 corrupted labels over the K − 1 = 3 other classes: each offset (y' − y) mod 4
    # in {1, 2, 3} has probability 1/3; count std = √(4000·(1/3)(2/3)) ≈ 30, allow 5σ.
    clean = data.make_dataset(np.zeros((4000, 1)), np.arange(4000) % 4, 4)
    noisy = data.corrupt_labels(clean, 1.0, key=KEY)
    offsets = np.bincount((noisy.y - clean.y) % 4, minlength=4)
    assert offsets[0] == 0
    np.testing.assert_allclose(offsets[1:], 4000 / 3, atol=5 * 30)


def test_make_dataset_validation():
    with pytest.raises(ValueError, match=r"labels must lie in .* = \[0, 3\)"):
        data.make_dataset(np.zeros((3, 2)), [0, 1, 3], 3)
    with pytest.raises(ValueError, match=r"labels must lie in .* = \[0, 3\)"):
        data.make_dataset(np.zeros((3, 2)), [0, -1, 2], 3)
    with pytest.raises(ValueError, match="labels must be integers"):
        data.make_dataset(np.zeros((3, 2)), [0, 1.5, 2], 3)
    with pytest.raises(ValueError, match="one label per example"):
        data.make_dataset(np.zeros((3, 2)), [0, 1], 3)
    with pytest.raises(ValueError, match="non-finite"):
        data.make_dataset(np.full((2, 2), np.nan), [0, 1], 2)
    with pytest.raises(ValueError, match="fraction"):
        data.corrupt_labels(data.make_dataset(np.zeros((2, 1)), [0, 1]), 1.5, key=KEY)


# --------------------------------------------------------------------- built in
def test_builtin_digits_are_scikit_learns_without_scikit_learn(monkeypatch):
    """The shipped file gives exactly scikit-learn's load_digits arrays (pixels / 16,
    labels, order), and loading it never imports scikit-learn."""
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    reference = sklearn_datasets.load_digits()
    monkeypatch.setitem(sys.modules, "sklearn", None)  # makes `import sklearn…` fail
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds, default = data.digits(), data.builtin()
    assert ds.name == "digits" and ds.x.shape == (1797, 8, 8, 1) and ds.num_classes == 10
    np.testing.assert_array_equal(ds.x[..., 0], (reference.images / 16.0).astype(np.float32))
    np.testing.assert_array_equal(ds.y, reference.target)
    np.testing.assert_array_equal(default.x, ds.x)
    np.testing.assert_array_equal(default.y, ds.y)
    assert np.bincount(ds.y).min() == 174 and np.bincount(ds.y).max() == 183  # every digit present


def test_load_builtin_is_the_real_digits_and_synthetic_only_by_name():
    splits = data.load("builtin", key=KEY)
    digits = data.load("digits", key=KEY)
    assert splits.train.name == "digits"
    assert (splits.train.num_examples, splits.validation.num_examples, splits.test.num_examples) == (1258, 180, 359)
    np.testing.assert_array_equal(splits.train.x, digits.train.x)
    synthetic = data.load("synthetic", key=KEY)
    assert synthetic.train.name == "synthetic_digits" and synthetic.train.x.shape[1:] == (8, 8, 1)


def test_synthetic_data_is_learnable_by_nearest_prototype():
    """The generated data are a real task, of about the real digits' difficulty: a
    nearest-class-mean classifier fit on one half gets ≥ 80 % of the other half
    (chance: 10 % and 20 %; the real digits give 88 %, these seeds 88 % and 95 %)."""
    for ds in (data.synthetic_digits(key=KEY), data.gaussian_mixture(1000, 10, 5, key=KEY)):
        x = ds.x.reshape(ds.num_examples, -1)
        half = ds.num_examples // 2
        means = np.stack([x[:half][ds.y[:half] == c].mean(0) for c in range(ds.num_classes)])
        pred = np.argmin(((x[half:, None, :] - means) ** 2).sum(-1), axis=1)
        assert np.mean(pred == ds.y[half:]) >= 0.8
