"""The data-set types — :class:`Dataset` (one set of examples) and :class:`Splits`
(train / validation / test) — their checked constructor :func:`make_dataset`, and the
argument checks the other data modules share (a JAX key turned into a NumPy generator,
counts, non-negative numbers)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ...problems import _seed


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


# their public home (reprs, pickles)
for _cls in (Dataset, Splits):
    _cls.__module__ = "sgdsde.nn.data"
del _cls
