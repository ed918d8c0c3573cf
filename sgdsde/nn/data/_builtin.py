"""The built-in data sets, no download: the real 8 × 8 :func:`digits` shipped inside the
package (also :func:`builtin`), and the generated :func:`synthetic_digits` and
:func:`gaussian_mixture`, used only when asked for by name."""

from __future__ import annotations

import os

import numpy as np

from ._dataset import Dataset, _check_count, _check_nonnegative, _rng, make_dataset

_DIGITS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits.npz")


def digits() -> Dataset:
    """The 1,797 8 × 8 UCI handwritten digits (10 classes, 174–183 images each), shipped
    in the package (``digits.npz``, 45 kB): exactly scikit-learn's
    ``sklearn.datasets.load_digits()`` arrays, in its order, without scikit-learn.
    x (1797, 8, 8, 1) = pixel count / 16 ∈ [0, 1] (float32), y = the digit.

    Data: E. Alpaydin and C. Kaynak, *Optical Recognition of Handwritten Digits*, UCI
    Machine Learning Repository (CC BY 4.0), as distributed by scikit-learn
    (BSD-3-Clause); ``python -m sgdsde.nn.data._make_digits`` regenerates the file."""
    with np.load(_DIGITS_FILE) as arrays:
        images, target = arrays["images"], arrays["target"]
    x = images.astype(np.float32)[..., None] / 16.0
    return make_dataset(x, target.astype(np.int64), 10, name="digits")


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


def builtin() -> Dataset:
    """The default data set, built in (no download, no optional dependency): :func:`digits`."""
    return digits()
