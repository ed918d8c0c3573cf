"""Small Flax (linen) classifiers: MLP, CNN, ResNet (ResNet-20 style) and VGG.

Every model maps a batch of inputs (B, …) to logits (B, num_classes); image models
take NHWC images (B, H, W, C). Parameters are the plain pytree ``model.init(key, x)``
returns, so :mod:`sgdsde` steps, vmaps and shards them like any other params.

Batch norm (``batch_norm=True``) is used with **frozen statistics**: the network
normalises every example with stored per-feature means and variances (the
``batch_stats`` collection, flax's inference mode), never with the statistics of the
minibatch it happens to be in. Each example's loss is then a function of (θ, x_i)
alone, so the per-example losses, their gradients, the minibatch loss
Σ_b w_b l_{i_b}(θ) and the gradient covariance C(θ) are the exact objects of
docs/theory.md §1. :func:`sgdsde.nn.classification_problem` sets the statistics to those
of the training set at the initial parameters (one pass with
``use_batch_statistics=True``) and keeps them fixed during training (they are not
trained: zero gradient, zero noise); the learnable scale and bias are trained. This
is *not* training-mode batch norm, whose per-example loss depends on the rest of the
minibatch.

Without batch norm, ResNet blocks start as the identity (the last convolution of every
residual branch is initialised to zero, "SkipInit"/Fixup style); with batch norm the
last norm's scale is initialised to zero instead (Goyal et al. 2017).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Callable, Sequence

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["MLP", "CNN", "ResNet", "VGG", "num_parameters", "lecun_normal"]


def lecun_normal(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
    """Flax's default kernel initialiser in distribution — a normal truncated to ±2σ,
    rescaled to variance 1/fan_in (fan_in = product of all but the last axis) — drawn as
    a flat vector and reshaped: multi-dimensional random draws compile several seconds
    slower on CPU (threefry with ``jax_threefry_partitionable``)."""
    size = int(np.prod(shape))
    fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else size
    std = np.sqrt(1.0 / fan_in) / 0.87962566103423978  # the truncation's std correction
    return (jax.random.truncated_normal(key, -2.0, 2.0, (size,), dtype) * std).reshape(shape)


def _conv(features: int, stride: int = 1, use_bias: bool = True, kernel_init=lecun_normal):
    return linen.Conv(
        features, (3, 3), (stride, stride), padding="SAME", use_bias=use_bias, kernel_init=kernel_init
    )


def _dense(features: int, use_bias: bool = True):
    return linen.Dense(features, use_bias=use_bias, kernel_init=lecun_normal)


def _norm(enabled: bool, use_batch_statistics: bool, scale_init=linen.initializers.ones):
    """A frozen-statistics batch norm (momentum 0: a pass with use_batch_statistics=True
    stores exactly that batch's statistics), or the identity when disabled."""
    if not enabled:
        return lambda x: x
    return linen.BatchNorm(
        use_running_average=not use_batch_statistics, momentum=0.0, epsilon=1e-5, scale_init=scale_init
    )


def _check_classes(num_classes) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes: must be a positive integer, got {num_classes!r}")


def _check_images(x, model: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{model}: expects NHWC images of shape (B, H, W, C), got input shape {x.shape}")


def _pool(x, kind: str):
    """2 × 2 pooling with stride 2 (skipped once the image is 1 pixel wide/high)."""
    if x.shape[1] < 2 or x.shape[2] < 2:
        return x
    pool = linen.avg_pool if kind == "avg" else linen.max_pool
    return pool(x, (2, 2), strides=(2, 2))


class MLP(linen.Module):
    """Fully connected: x flattened → [Dense(w) → (BatchNorm) → activation] for w in
    ``hidden`` → Dense(num_classes). Params: Σ (fan_in·w + w) over layers (a Dense before
    batch norm has no bias; the norm adds 2w)."""

    num_classes: int
    hidden: Sequence[int] = (64, 64)
    batch_norm: bool = False
    activation: Callable = linen.relu

    @linen.compact
    def __call__(self, x, use_batch_statistics: bool = False):
        _check_classes(self.num_classes)
        x = x.reshape((x.shape[0], -1))
        for width in self.hidden:
            x = _dense(int(width), not self.batch_norm)(x)
            x = _norm(self.batch_norm, use_batch_statistics)(x)
            x = self.activation(x)
        return _dense(self.num_classes)(x)


class CNN(linen.Module):
    """Small convolutional net: [Conv 3×3 (c) → (BatchNorm) → ReLU → 2×2 average pool]
    for c in ``channels`` → flatten → [Dense(w) → ReLU] for w in ``dense`` →
    Dense(num_classes)."""

    num_classes: int
    channels: Sequence[int] = (16, 32)
    dense: Sequence[int] = (64,)
    batch_norm: bool = False

    @linen.compact
    def __call__(self, x, use_batch_statistics: bool = False):
        _check_classes(self.num_classes)
        _check_images(x, "CNN")
        for c in self.channels:
            x = _conv(int(c), use_bias=not self.batch_norm)(x)
            x = _norm(self.batch_norm, use_batch_statistics)(x)
            x = _pool(linen.relu(x), "avg")
        x = x.reshape((x.shape[0], -1))
        for width in self.dense:
            x = linen.relu(_dense(int(width))(x))
        return _dense(self.num_classes)(x)


class _BasicBlock(linen.Module):
    """x → Conv3×3(stride) → (BN) → ReLU → Conv3×3 → (BN), plus the shortcut, → ReLU.
    Shortcut "option A" (He et al. 2016, CIFAR): identity, or when the shape changes,
    subsample by the stride and zero-pad the new channels (no parameters)."""

    channels: int
    stride: int
    batch_norm: bool

    @linen.compact
    def __call__(self, x, use_batch_statistics: bool):
        bias = not self.batch_norm
        last_init = linen.initializers.zeros if not self.batch_norm else lecun_normal
        y = _conv(self.channels, self.stride, bias)(x)
        y = linen.relu(_norm(self.batch_norm, use_batch_statistics)(y))
        y = _conv(self.channels, 1, bias, last_init)(y)
        y = _norm(self.batch_norm, use_batch_statistics, linen.initializers.zeros)(y)
        shortcut = x[:, :: self.stride, :: self.stride, :]
        extra = self.channels - x.shape[-1]
        if extra:
            shortcut = jnp.pad(shortcut, ((0, 0), (0, 0), (0, 0), (0, extra)))
        return linen.relu(y + shortcut)


class ResNet(linen.Module):
    """ResNet for small images in the style of He et al. (2016)'s CIFAR ResNet-20/32/…:
    Conv 3×3 (width) → (BN) → ReLU, three stages of n = (depth − 2)/6 basic blocks with
    width, 2·width, 4·width channels (the first block of stages 2 and 3 has stride 2),
    global average pool, Dense(num_classes). Option-A (parameter-free) shortcuts.
    ``ResNet(10, depth=20, width=16, batch_norm=True)`` on 32×32×3 images has the
    reference 269,722 parameters."""

    num_classes: int
    depth: int = 20
    width: int = 16
    batch_norm: bool = False

    @linen.compact
    def __call__(self, x, use_batch_statistics: bool = False):
        _check_classes(self.num_classes)
        _check_images(x, "ResNet")
        if not isinstance(self.depth, int) or self.depth < 8 or (self.depth - 2) % 6:
            raise ValueError(f"depth: must be 6n + 2 with n ≥ 1 (8, 14, 20, 32, …), got {self.depth!r}")
        if not isinstance(self.width, int) or self.width < 1:
            raise ValueError(f"width: must be a positive integer, got {self.width!r}")
        blocks = (self.depth - 2) // 6
        x = _conv(self.width, use_bias=not self.batch_norm)(x)
        x = linen.relu(_norm(self.batch_norm, use_batch_statistics)(x))
        for stage in range(3):
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                x = _BasicBlock(self.width * 2**stage, stride, self.batch_norm)(x, use_batch_statistics)
        x = jnp.mean(x, axis=(1, 2))
        return _dense(self.num_classes)(x)


class VGG(linen.Module):
    """Small VGG: for each stage, [Conv 3×3 (c) → (BN) → ReLU] for c in the stage, then a
    2×2 max pool; flatten → [Dense(w) → ReLU] for w in ``dense`` → Dense(num_classes)."""

    num_classes: int
    stages: Sequence[Sequence[int]] = ((32, 32), (64, 64), (128, 128))
    dense: Sequence[int] = (128,)
    batch_norm: bool = False

    @linen.compact
    def __call__(self, x, use_batch_statistics: bool = False):
        _check_classes(self.num_classes)
        _check_images(x, "VGG")
        for stage in self.stages:
            for c in stage:
                x = _conv(int(c), use_bias=not self.batch_norm)(x)
                x = linen.relu(_norm(self.batch_norm, use_batch_statistics)(x))
            x = _pool(x, "max")
        x = x.reshape((x.shape[0], -1))
        for width in self.dense:
            x = linen.relu(_dense(int(width))(x))
        return _dense(self.num_classes)(x)


def num_parameters(params) -> int:
    """Number of trainable parameters: the entries of the ``"params"`` collection when
    given a variables dict (batch statistics are not trained), else of every leaf."""
    tree = params["params"] if isinstance(params, Mapping) and "params" in params else params
    return int(sum(int(np.prod(np.shape(leaf))) for leaf in jax.tree_util.tree_leaves(tree)))
