"""Transforms of a data set: random train / validation / test splits (:func:`split`,
:func:`split_validation`), :func:`subset` and random-label :func:`corrupt_labels`; each
reproducible from its key."""

from __future__ import annotations

import numpy as np

from ._dataset import Dataset, Splits, _check_count, _check_dataset, _rng, _take


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
