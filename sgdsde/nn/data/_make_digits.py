"""Writes ``digits.npz`` beside this file: the 1,797 8 × 8 UCI handwritten digits as
scikit-learn ships them (``sklearn.datasets.load_digits``; the data: E. Alpaydin and
C. Kaynak, UCI Machine Learning Repository, CC BY 4.0; scikit-learn: BSD-3-Clause).

    python -m sgdsde.nn.data._make_digits      (needs scikit-learn; run once, committed)

Arrays: ``images`` uint8 (1797, 8, 8), pixel counts 0–16; ``target`` uint8 (1797,),
labels 0–9; in scikit-learn's order. Deterministic: rerunning rewrites the same arrays."""

from __future__ import annotations

import os

import numpy as np

PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits.npz")


def main(path: str = PATH) -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images, target = np.asarray(bunch.images), np.asarray(bunch.target)
    if not (np.array_equal(images, np.round(images)) and images.min() >= 0 and images.max() <= 16):
        raise ValueError("scikit-learn's digits are no longer integer pixel counts 0-16")
    np.savez_compressed(path, images=images.astype(np.uint8), target=target.astype(np.uint8))
    print(f"wrote {path}: {images.shape[0]} images, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
