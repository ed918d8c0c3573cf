"""Classification data sets: a built-in default, local-file loaders, splits, label noise.

A :class:`Dataset` holds images (or feature vectors) ``x`` of shape (N, …) in float32 —
images are (N, H, W, C), scaled to [0, 1] — and integer labels ``y`` in [0, K).

- Built in, no download and no optional dependency: :func:`digits` (the 8 × 8 UCI
  handwritten digits, 1797 images, 10 classes, shipped in the package: exactly
  scikit-learn's ``load_digits``), also :func:`builtin`. Generated data only when asked
  for: :func:`synthetic_digits` (same shape, size and classes) and
  :func:`gaussian_mixture` (feature vectors).
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

import os

import numpy as np

from ._builtin import builtin, digits, gaussian_mixture, synthetic_digits
# _check_dataset: imported from here by sgdsde.nn.metrics and sgdsde.nn.problem
from ._dataset import Dataset, Splits, _check_dataset, _rng, make_dataset  # noqa: F401
from ._files import load_cifar10, load_cifar100, load_fashion_mnist, load_mnist, read_idx
from ._transforms import _count_or_fraction, corrupt_labels, split, split_validation, subset

__all__ = [
    "Dataset",
    "Splits",
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


def load(name: str, folder: str | os.PathLike | None = None, *, key, validation=0.1, test=0.2) -> Splits:
    """Load a data set by name and split it; always returns :class:`Splits`.

    name: one of :data:`FORMATS` — "digits" or "builtin" (the real digits, built in),
    "synthetic" (generated synthetic_digits), which are split into train / validation / test by
    ``validation`` and ``test`` (counts or fractions); or "mnist", "fashion_mnist",
    "cifar10", "cifar100" (fine labels) read from ``folder``, whose own test set is
    kept and whose validation set is carved from the training set (``test`` is unused).
    key: the randomness of the splits (and of the synthetic data)."""
    if name in ("digits", "synthetic", "builtin"):
        if folder is not None:
            raise ValueError(f"folder: {name!r} is built in and reads no folder")
        data_key, split_key = _split_key(key)
        dataset = {"digits": digits, "synthetic": lambda: synthetic_digits(key=data_key),
                   "builtin": builtin}[name]()
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
