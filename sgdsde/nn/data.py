"""Classification data sets: a built-in default, local-file loaders, splits, label noise.

A :class:`Dataset` holds images (or feature vectors) ``x`` of shape (N, …) in float32 —
images are (N, H, W, C), scaled to [0, 1] — and integer labels ``y`` in [0, K).

- Built in, no download: :func:`digits` (scikit-learn's 8 × 8 handwritten digits,
  1797 images, 10 classes; needs the optional extra ``sgdsde[data]``), with the
  generated fallbacks :func:`synthetic_digits` (same shape, size and classes) and
  :func:`gaussian_mixture` (feature vectors). :func:`builtin` picks digits when
  scikit-learn is installed, else the fallback (with a :class:`DataFallbackWarning`).
- Local files, never ``pickle``: :func:`load_mnist` / :func:`load_fashion_mnist`
  (IDX files, optionally gzipped; :func:`read_idx`) and :func:`load_cifar10` /
  :func:`load_cifar100` (the *binary* version of CIFAR).
- :func:`split` (train / validation / test), :func:`split_validation`, :func:`subset`
  (a chosen N) and :func:`corrupt_labels` (random labels on an exact fraction; which
  examples were corrupted is recorded in ``Dataset.corrupted``).
- :func:`load` dispatches on a name and always returns :class:`Splits`.

Randomness comes from explicit JAX keys (turned into a NumPy generator; data handling
happens in NumPy), so every split, subset and corruption is reproducible from its key.
"""

from __future__ import annotations

import gzip
import os
import zlib
import warnings
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from ..problems import _seed

__all__ = [
    "Dataset",
    "Splits",
    "DataFallbackWarning",
    "make_dataset",
    "digits",
    "synthetic_digits",
    "gaussian_mixture",
    "builtin",
    "read_idx",
    "load_mnist",
    "load_fashion_mnist",
    "load_cifar10",
    "load_cifar100",
    "load",
    "FORMATS",
    "split",
    "split_validation",
    "subset",
    "corrupt_labels",
]

FORMATS = ("digits", "synthetic", "builtin", "mnist", "fashion_mnist", "cifar10", "cifar100")


class DataFallbackWarning(UserWarning):
    """The built-in data set fell back to generated data (scikit-learn is not installed)."""


class Dataset(NamedTuple):
    """x: float32 (N, …) inputs (images (N, H, W, C) in [0, 1]); y: int32 (N,) labels in
    [0, num_classes); name: where the data came from; split: "train", "validation",
    "test" or ""; corrupted: bool (N,), True where :func:`corrupt_labels` replaced the
    label; original_y: int32 (N,), the labels before corruption (= y where not corrupted).

    Build one with :func:`make_dataset`, which checks the fields."""

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    name: str = ""
    split: str = ""
    corrupted: np.ndarray | None = None
    original_y: np.ndarray | None = None

    @property
    def num_examples(self) -> int:
        return int(self.y.shape[0])

    @property
    def input_shape(self) -> tuple:
        """Shape of one example, x.shape[1:]."""
        return tuple(self.x.shape[1:])


class Splits(NamedTuple):
    """train, validation, test :class:`Dataset` s (validation/test may be None)."""

    train: Dataset
    validation: Dataset | None = None
    test: Dataset | None = None


# ----------------------------------------------------------------- construction
def make_dataset(
    x,
    y,
    num_classes: int | None = None,
    *,
    name: str = "",
    split: str = "",
    corrupted=None,
    original_y=None,
) -> Dataset:
    """A checked :class:`Dataset`: x is cast to float32 (finite, leading axis N), y to
    int32 labels in [0, num_classes) (num_classes defaults to max(y) + 1)."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"x: needs a leading example axis with at least one example, got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"x: must be numeric, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError("x: contains non-finite values (NaN or inf)")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y: must be a vector of one label per example (length {x.shape[0]}), got shape {y.shape}")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError("y: labels must be integers")
    elif not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y: labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if num_classes is None:
        num_classes = int(y.max()) + 1
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes: must be an integer ≥ 2, got {num_classes!r}")
    num_classes = int(num_classes)
    if np.any(y < 0) or np.any(y >= num_classes):
        raise ValueError(
            f"y: labels must lie in [0, num_classes) = [0, {num_classes}), got values in [{y.min()}, {y.max()}]"
        )
    n = x.shape[0]
    corrupted = np.zeros(n, bool) if corrupted is None else np.asarray(corrupted, bool)
    original_y = y if original_y is None else np.asarray(original_y)
    if corrupted.shape != (n,) or original_y.shape != (n,):
        raise ValueError(f"corrupted, original_y: must have shape ({n},)")
    if np.any(original_y[~corrupted] != y[~corrupted]):
        raise ValueError("original_y: must equal y wherever corrupted is False")
    return Dataset(
        x, y.astype(np.int32), num_classes, str(name), str(split), corrupted, original_y.astype(np.int32)
    )


def _take(dataset: Dataset, indices: np.ndarray, split: str | None = None) -> Dataset:
    """The examples at ``indices`` (fields carried along)."""
    return dataset._replace(
        x=dataset.x[indices],
        y=dataset.y[indices],
        corrupted=dataset.corrupted[indices],
        original_y=dataset.original_y[indices],
        split=dataset.split if split is None else split,
    )


def _check_dataset(dataset, name: str = "dataset") -> Dataset:
    if isinstance(dataset, Splits):
        raise TypeError(f"{name}: got Splits; pass one of its data sets, e.g. splits.train")
    if not isinstance(dataset, Dataset):
        raise TypeError(f"{name}: must be an sgdsde.nn.data.Dataset (see make_dataset), got {type(dataset).__name__}")
    return dataset


# ------------------------------------------------------------------- built in
def digits() -> Dataset:
    """scikit-learn's 8 × 8 handwritten digits (1797 images, 10 classes), shipped with
    scikit-learn (no download): x (1797, 8, 8, 1) = pixel counts / 16 ∈ [0, 1].

    Needs scikit-learn (``pip install sgdsde[data]``)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError(
            "digits: needs scikit-learn, which ships the 8x8 digits data; install it with "
            "`pip install sgdsde[data]` (or use sgdsde.nn.data.synthetic_digits / builtin())"
        ) from err
    bunch = load_digits()
    x = np.asarray(bunch.images, np.float32)[..., None] / 16.0
    return make_dataset(x, bunch.target, 10, name="digits")


def synthetic_digits(
    num_examples: int = 1797,
    *,
    key,
    image_shape: tuple[int, int] = (8, 8),
    num_classes: int = 10,
    noise: float = 0.25,
) -> Dataset:
    """Generated stand-in for :func:`digits` (same shape, size and number of classes).

    Each class c has a prototype image p_c: a sum of four Gaussian blobs (width 1 pixel)
    at uniform random positions, scaled to a maximum of 1, redrawn (up to 100 times)
    until its cosine similarity with every earlier prototype is below 0.7. An example
    of class c is p_c shifted cyclically by a random offset in {−1, 0, 1}², plus
    N(0, noise²) pixel noise, clipped to [0, 1]. Classes are balanced (counts differ
    by ≤ 1); the order of examples is random. x: (N, H, W, 1). With the defaults a
    nearest-class-mean classifier gets about 85 % (the real digits: about 88 %)."""
    n = _check_count(num_examples, "num_examples", 1)
    k = _check_count(num_classes, "num_classes", 2)
    height, width = (_check_count(s, "image_shape", 2) for s in image_shape)
    noise = _check_nonnegative(noise, "noise")
    rng = _rng(key)
    rows, cols = np.mgrid[0:height, 0:width]
    prototypes = []
    for _ in range(k):
        for _attempt in range(100):
            p = np.zeros((height, width))
            for _blob in range(4):
                r, s = rng.uniform(0, height - 1), rng.uniform(0, width - 1)
                p += np.exp(-((rows - r) ** 2 + (cols - s) ** 2) / 2.0)
            p /= p.max()
            if all(np.sum(p * q) / (np.linalg.norm(p) * np.linalg.norm(q)) < 0.7 for q in prototypes):
                break
        prototypes.append(p)
    y = rng.permutation(np.arange(n) % k)
    shifts = rng.integers(-1, 2, size=(n, 2))
    x = np.stack([np.roll(prototypes[y[i]], tuple(shifts[i]), axis=(0, 1)) for i in range(n)])
    x = np.clip(x + noise * rng.standard_normal(x.shape), 0.0, 1.0)
    return make_dataset(x[..., None], y, k, name="synthetic_digits")


def gaussian_mixture(
    num_examples: int, dim: int, num_classes: int, *, key, separation: float = 3.0
) -> Dataset:
    """Feature vectors from a Gaussian mixture: class means μ_c ~ N(0, I_d), rescaled to
    norm ``separation``; x = μ_y + N(0, I_d); balanced classes in random order. x: (N, d)."""
    n = _check_count(num_examples, "num_examples", 1)
    d = _check_count(dim, "dim", 1)
    k = _check_count(num_classes, "num_classes", 2)
    separation = _check_nonnegative(separation, "separation")
    rng = _rng(key)
    means = rng.standard_normal((k, d))
    means *= separation / np.linalg.norm(means, axis=1, keepdims=True)
    y = rng.permutation(np.arange(n) % k)
    x = means[y] + rng.standard_normal((n, d))
    return make_dataset(x, y, k, name="gaussian_mixture")


def builtin(*, key=None, fallback: bool = True) -> Dataset:
    """The default data set that needs no download: :func:`digits` when scikit-learn is
    installed; otherwise (``fallback=True``) :func:`synthetic_digits` with the same
    shape (key: its seed, default ``jax.random.key(0)``) and a
    :class:`DataFallbackWarning`."""
    try:
        return digits()
    except ImportError:
        if not fallback:
            raise
    warnings.warn(
        "scikit-learn is not installed, so sgdsde.nn.data.builtin() returns generated "
        "synthetic_digits instead of the 8x8 digits (pip install sgdsde[data] for the real data)",
        DataFallbackWarning,
        stacklevel=2,
    )
    return synthetic_digits(key=jax.random.key(0) if key is None else key)


# ---------------------------------------------------------------- IDX (MNIST)
_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path, expected: str) -> bytes:
    """The bytes of ``path``, gunzipped when they start with the gzip magic (whatever the
    name says); a corrupt gzip stream raises ValueError naming the file and ``expected``
    (the format it should hold)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise FileNotFoundError(f"cannot read {path}: {err}") from err
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
            raise ValueError(
                f"{path}: malformed gzip file, expected {expected} ({type(err).__name__}: {err}); "
                "the file is damaged or cut short: download it again"
            ) from err
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An IDX file (the MNIST format; gzipped or raw, detected from its content) as a
    NumPy array in native byte order.

    Format: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions, then each dimension as a
    big-endian int32, then the data, big-endian. Raises ValueError on anything else
    (including a file longer or shorter than its header says)."""
    path = Path(path)
    raw = _read_bytes(path, "a gzipped IDX file")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: malformed IDX file (the first two bytes must be zero; not an IDX file?)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        raise ValueError(f"{path}: malformed IDX file (unknown data type code 0x{code:02x})")
    if ndim < 1:
        raise ValueError(f"{path}: malformed IDX file (zero dimensions)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: malformed IDX file (truncated header)")
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = _IDX_TYPES[code]
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"{path}: malformed IDX file (header says shape {shape} of {dtype.name}: "
            f"{expected} bytes, the file has {len(raw)})"
        )
    data = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _find(folder: Path, names: list[str], what: str) -> Path:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"{what}: none of {names} found in {folder}")


def _idx_split(folder: Path, stem: str, name: str, split_name: str, num_classes: int) -> Dataset:
    files = {}
    for part, rank in (("images", 3), ("labels", 1)):
        base = [f"{stem}-{part}-idx{rank}-ubyte", f"{stem}-{part}.idx{rank}-ubyte"]
        candidates = [b + ext for b in base for ext in ("", ".gz")]
        files[part] = _find(folder, candidates, f"{name} {split_name} {part}")
    images, labels = read_idx(files["images"]), read_idx(files["labels"])
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{files['images']}: expected uint8 images of shape (N, H, W), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ValueError(f"{files['labels']}: expected uint8 labels of shape (N,), got {labels.dtype} {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{name} {split_name}: {images.shape[0]} images but {labels.shape[0]} labels "
            f"({files['images'].name}, {files['labels'].name})"
        )
    if labels.size and labels.max() >= num_classes:
        raise ValueError(f"{files['labels']}: labels must lie in [0, {num_classes}), found {labels.max()}")
    x = images[..., None].astype(np.float32) / 255.0
    return make_dataset(x, labels, num_classes, name=name, split=split_name)


def _folder(folder, what: str) -> Path:
    if folder is None:
        raise ValueError(f"folder: {what} is read from a local folder; pass folder=...")
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"folder: {path} is not a directory ({what})")
    return path


def load_mnist(folder: str | os.PathLike, *, name: str = "mnist") -> Splits:
    """MNIST from a local folder holding the four IDX files (raw or ``.gz``):
    ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
    ``t10k-labels-idx1-ubyte`` (``train-images.idx3-ubyte`` spelling also accepted).
    Returns Splits(train, None, test); x (N, 28, 28, 1) in [0, 1]."""
    path = _folder(folder, name)
    return Splits(
        _idx_split(path, "train", name, "train", 10), None, _idx_split(path, "t10k", name, "test", 10)
    )


def load_fashion_mnist(folder: str | os.PathLike) -> Splits:
    """Fashion-MNIST: the same file names and format as :func:`load_mnist`."""
    return load_mnist(folder, name="fashion_mnist")


# ---------------------------------------------------------------- CIFAR binary
_CIFAR_PIXELS = 32 * 32 * 3


def _cifar_file(path: Path, label_bytes: int, label_index: int, num_classes: int, name: str, split_name: str):
    raw = _read_bytes(path, f"a gzipped {name} binary file")
    record = label_bytes + _CIFAR_PIXELS
    if len(raw) == 0 or len(raw) % record:
        raise ValueError(
            f"{path}: malformed {name} binary file ({len(raw)} bytes is not a positive multiple of the "
            f"{record}-byte record: {label_bytes} label byte(s) + 3072 pixels)"
        )
    records = np.frombuffer(raw, np.uint8).reshape(-1, record)
    labels = records[:, label_index]
    if labels.max() >= num_classes:
        raise ValueError(f"{path}: labels must lie in [0, {num_classes}), found {labels.max()} (not a {name} file?)")
    # pixels are stored channel-major: 1024 red, 1024 green, 1024 blue, each 32×32 row-major
    images = records[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels


def _cifar_dir(folder, subdir: str, name: str) -> Path:
    path = _folder(folder, name)
    return path / subdir if (path / subdir).is_dir() else path


def _cifar_split(paths, label_bytes, label_index, num_classes, name, split_name) -> Dataset:
    parts = [_cifar_file(p, label_bytes, label_index, num_classes, name, split_name) for p in paths]
    x = np.concatenate([p[0] for p in parts]).astype(np.float32) / 255.0
    y = np.concatenate([p[1] for p in parts])
    return make_dataset(x, y, num_classes, name=name, split=split_name)


def load_cifar10(folder: str | os.PathLike) -> Splits:
    """CIFAR-10, binary version, from a local folder: ``data_batch_1.bin`` …
    ``data_batch_5.bin`` and ``test_batch.bin`` (in ``folder`` or its
    ``cifar-10-batches-bin`` subfolder; extract ``cifar-10-binary.tar.gz`` first).
    Records: 1 label byte + 3072 pixel bytes. Returns Splits(train, None, test);
    x (N, 32, 32, 3) in [0, 1]."""
    path = _cifar_dir(folder, "cifar-10-batches-bin", "cifar10")
    train = [_find(path, [f"data_batch_{i}.bin"], "cifar10 train") for i in range(1, 6)]
    test = [_find(path, ["test_batch.bin"], "cifar10 test")]
    return Splits(
        _cifar_split(train, 1, 0, 10, "cifar10", "train"), None, _cifar_split(test, 1, 0, 10, "cifar10", "test")
    )


def load_cifar100(folder: str | os.PathLike, *, labels: str = "fine") -> Splits:
    """CIFAR-100, binary version, from a local folder: ``train.bin`` and ``test.bin``
    (in ``folder`` or its ``cifar-100-binary`` subfolder). Records: a coarse label byte
    (20 superclasses), a fine label byte (100 classes), 3072 pixel bytes.
    labels: "fine" (100 classes) or "coarse" (20). Returns Splits(train, None, test)."""
    if labels not in ("fine", "coarse"):
        raise ValueError(f"labels: must be 'fine' or 'coarse', got {labels!r}")
    index, classes = (1, 100) if labels == "fine" else (0, 20)
    name = f"cifar100_{labels}"
    path = _cifar_dir(folder, "cifar-100-binary", "cifar100")
    train = [_find(path, ["train.bin"], "cifar100 train")]
    test = [_find(path, ["test.bin"], "cifar100 test")]
    return Splits(
        _cifar_split(train, 2, index, classes, name, "train"), None, _cifar_split(test, 2, index, classes, name, "test")
    )


# -------------------------------------------------------------------- splits
def _count_or_fraction(value, total: int, name: str) -> int:
    """An int count in [0, total], or a fraction in [0, 1) of total (rounded)."""
    if isinstance(value, bool):
        raise ValueError(f"{name}: must be a count or a fraction, got {value!r}")
    if isinstance(value, (int, np.integer)):
        count = int(value)
    elif isinstance(value, (float, np.floating)) and 0.0 <= value < 1.0:
        count = int(round(float(value) * total))
    else:
        raise ValueError(f"{name}: must be an integer count or a fraction in [0, 1), got {value!r}")
    if not 0 <= count <= total:
        raise ValueError(f"{name}: {count} examples requested but only {total} are available")
    return count


def split(dataset: Dataset, *, key, validation: int | float = 0.1, test: int | float = 0.2) -> Splits:
    """Random train / validation / test split (a permutation drawn from ``key``).

    validation, test: counts, or fractions of N (rounded). A split of size 0 is None.
    The train split keeps at least one example."""
    dataset = _check_dataset(dataset)
    n = dataset.num_examples
    n_val = _count_or_fraction(validation, n, "validation")
    n_test = _count_or_fraction(test, n, "test")
    if n_val + n_test >= n:
        raise ValueError(f"validation + test: {n_val} + {n_test} leaves no training examples (N = {n})")
    order = _rng(key).permutation(n)
    pieces = np.split(order, [n_test, n_test + n_val])
    test_idx, val_idx, train_idx = (np.sort(p) for p in pieces)
    return Splits(
        _take(dataset, train_idx, "train"),
        _take(dataset, val_idx, "validation") if n_val else None,
        _take(dataset, test_idx, "test") if n_test else None,
    )


def split_validation(splits: Splits, validation: int | float, *, key) -> Splits:
    """Carve a validation set (a count or a fraction of the training set) out of
    ``splits.train`` at random; the test set is kept."""
    if not isinstance(splits, Splits):
        raise TypeError(f"splits: must be sgdsde.nn.data.Splits, got {type(splits).__name__}")
    if splits.validation is not None:
        raise ValueError("splits: already has a validation set")
    parts = split(splits.train, key=key, validation=validation, test=0)
    return Splits(parts.train, parts.validation, splits.test)


def subset(dataset: Dataset, num_examples: int, *, key=None) -> Dataset:
    """N = ``num_examples`` examples: the first ones (key None) or a uniformly random
    subset drawn from ``key`` (kept in their original order)."""
    dataset = _check_dataset(dataset)
    n = _check_count(num_examples, "num_examples", 1)
    if n > dataset.num_examples:
        raise ValueError(f"num_examples: {n} requested but the data set has {dataset.num_examples}")
    if key is None:
        indices = np.arange(n)
    else:
        indices = np.sort(_rng(key).choice(dataset.num_examples, n, replace=False))
    return _take(dataset, indices)


def corrupt_labels(dataset: Dataset, fraction: float, *, key) -> Dataset:
    """Random labels on exactly round(fraction · N) examples (the memorisation
    experiments): those examples, chosen uniformly at random, get a label drawn
    uniformly from the K − 1 *other* classes, so exactly that many labels are wrong.

    ``corrupted`` marks them; ``original_y`` keeps the clean labels. Examples already
    corrupted count again (corrupt the clean data set to control the total)."""
    dataset = _check_dataset(dataset)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)) or not 0 <= fraction <= 1:
        raise ValueError(f"fraction: must be a number in [0, 1], got {fraction!r}")
    n, k = dataset.num_examples, dataset.num_classes
    count = int(round(float(fraction) * n))
    rng = _rng(key)
    chosen = rng.choice(n, count, replace=False)
    y = dataset.y.copy()
    # a uniform label among the K − 1 others: original + offset (1 … K−1) mod K
    y[chosen] = (y[chosen] + rng.integers(1, k, size=count)) % k
    corrupted = dataset.corrupted.copy()
    corrupted[chosen] = True
    return dataset._replace(y=y.astype(np.int32), corrupted=corrupted)


# ---------------------------------------------------------------------- load
def load(name: str, folder: str | os.PathLike | None = None, *, key, validation=0.1, test=0.2) -> Splits:
    """Load a data set by name and split it; always returns :class:`Splits`.

    name: one of :data:`FORMATS` — "digits", "synthetic" (synthetic_digits), "builtin"
    (digits, else synthetic), which are split into train / validation / test by
    ``validation`` and ``test`` (counts or fractions); or "mnist", "fashion_mnist",
    "cifar10", "cifar100" (fine labels) read from ``folder``, whose own test set is
    kept and whose validation set is carved from the training set (``test`` is unused).
    key: the randomness of the splits (and of the synthetic data)."""
    if name in ("digits", "synthetic", "builtin"):
        if folder is not None:
            raise ValueError(f"folder: {name!r} is built in and reads no folder")
        data_key, split_key = _split_key(key)
        dataset = {"digits": digits, "synthetic": lambda: synthetic_digits(key=data_key),
                   "builtin": lambda: builtin(key=data_key)}[name]()
        return split(dataset, key=split_key, validation=validation, test=test)
    loaders = {"mnist": load_mnist, "fashion_mnist": load_fashion_mnist, "cifar10": load_cifar10,
               "cifar100": load_cifar100}
    if name not in loaders:
        raise ValueError(f"name: unknown data format {name!r}; known formats are {FORMATS}")
    splits = loaders[name](folder)
    if _count_or_fraction(validation, splits.train.num_examples, "validation") == 0:
        return splits
    return split_validation(splits, validation, key=key)


def _split_key(key):
    """Two independent raw keys (uint32[2]) from one key."""
    return _rng(key).integers(0, 2**32, size=(2, 2), dtype=np.uint32)


# ------------------------------------------------------------------- helpers
def _rng(key) -> np.random.Generator:
    """A NumPy generator seeded from a JAX key (typed or raw uint32[2])."""
    if key is None:
        raise ValueError("key: a JAX PRNG key is required (e.g. jax.random.key(0))")
    try:
        return _seed(key)
    except (TypeError, ValueError) as err:
        raise ValueError(f"key: must be a JAX PRNG key (jax.random.key(seed)), got {key!r}") from err


def _check_count(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: must be an integer ≥ {minimum}, got {value!r}")
    return int(value)


def _check_nonnegative(value, name: str) -> float:
    number = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    if not number or not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{name}: must be a finite number ≥ 0, got {value!r}")
    return float(value)
