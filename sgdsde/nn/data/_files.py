"""Data sets read from local files, never ``pickle``: the IDX format of MNIST and
Fashion-MNIST (:func:`read_idx`, :func:`load_mnist`, :func:`load_fashion_mnist`) and
the binary version of CIFAR-10/100 (:func:`load_cifar10`, :func:`load_cifar100`);
gzipped files are recognised by their content."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from ._dataset import Dataset, Splits, make_dataset


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
