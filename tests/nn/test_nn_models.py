"""sgdsde.nn.models: output shapes, parameter counts (closed forms and the ResNet-20
reference count), the identity start of residual blocks, and bad configurations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sgdsde.nn as snn

KEY = jax.random.key(0)


def _shapes(model, input_shape):
    """(output shape, trainable parameter count) without computing anything."""
    x = jnp.zeros(input_shape, jnp.float32)
    variables = jax.eval_shape(model.init, KEY, x)
    out = jax.eval_shape(model.apply, variables, x)
    return out.shape, snn.num_parameters(variables), variables


def _dense(fan_in, fan_out, bias=True):
    return fan_in * fan_out + (fan_out if bias else 0)


def _conv(c_in, c_out, bias=True):
    return 9 * c_in * c_out + (c_out if bias else 0)


def _resnet_count(depth, width, channels, classes, batch_norm):
    """Closed form for sgdsde.nn.ResNet: convs (no bias under batch norm), 2 norm
    parameters per channel of every norm, option-A shortcuts (no parameters)."""
    bias, norm = (False, 2) if batch_norm else (True, 0)
    total = _conv(channels, width, bias) + norm * width
    c_in = width
    for stage in range(3):
        c = width * 2**stage
        for _ in range((depth - 2) // 6):
            total += _conv(c_in, c, bias) + _conv(c, c, bias) + 2 * norm * c
            c_in = c
    return total + _dense(4 * width, classes)


def test_resnet20_matches_reference_parameter_count():
    # ResNet-20 of He et al. (2016) for CIFAR-10 ("0.27M"); the reference PyTorch
    # implementation (akamaster/pytorch_resnet_cifar10) counts 269,722 parameters.
    shape, count, variables = _shapes(snn.ResNet(10, depth=20, width=16, batch_norm=True), (2, 32, 32, 3))
    assert shape == (2, 10)
    assert count == 269_722 == _resnet_count(20, 16, 3, 10, True)
    assert "batch_stats" in variables  # frozen statistics, not counted as parameters


@pytest.mark.parametrize(
    "model, input_shape, expected",
    [
        (snn.MLP(10, hidden=(32, 16)), (3, 8, 8, 1), _dense(64, 32) + _dense(32, 16) + _dense(16, 10)),
        (
            snn.MLP(10, hidden=(32,), batch_norm=True),
            (3, 8, 8, 1),
            _dense(64, 32, bias=False) + 2 * 32 + _dense(32, 10),
        ),
        (
            snn.CNN(10, channels=(8, 16), dense=(32,)),
            (3, 28, 28, 1),  # 28 → 14 → 7 after two 2×2 pools
            _conv(1, 8) + _conv(8, 16) + _dense(7 * 7 * 16, 32) + _dense(32, 10),
        ),
        (
            snn.VGG(100, stages=((8, 8), (16,)), dense=(32,), batch_norm=True),
            (2, 32, 32, 3),  # 32 → 16 → 8
            _conv(3, 8, False) + _conv(8, 8, False) + _conv(8, 16, False) + 2 * (8 + 8 + 16)
            + _dense(8 * 8 * 16, 32) + _dense(32, 100),
        ),
        (snn.ResNet(7, depth=8, width=4), (2, 8, 8, 1), _resnet_count(8, 4, 1, 7, False)),
        (snn.ResNet(10, depth=14, width=8, batch_norm=True), (2, 8, 8, 3), _resnet_count(14, 8, 3, 10, True)),
    ],
    ids=["mlp", "mlp-bn", "cnn-mnist", "vgg-cifar100", "resnet8", "resnet14-bn"],
)
def test_output_shape_and_parameter_count(model, input_shape, expected):
    shape, count, _ = _shapes(model, input_shape)
    assert shape == (input_shape[0], model.num_classes)
    assert count == expected


def test_vgg_pools_stop_at_one_pixel():
    # 8×8 digits through 4 stages: 8 → 4 → 2 → 1 → 1 (the last pool is skipped)
    shape, count, _ = _shapes(snn.VGG(10, stages=((4,), (4,), (4,), (4,)), dense=()), (2, 8, 8, 1))
    assert shape == (2, 10)
    assert count == _conv(1, 4) + 3 * _conv(4, 4) + _dense(4, 10)


def test_resnet_blocks_start_as_identity():
    """Without batch norm the last convolution of every residual branch starts at zero,
    so at initialisation each block returns its (non-negative) input, subsampled and
    zero-padded: the net is Dense(mean over pixels of the stem's output)."""
    model = snn.ResNet(3, depth=8, width=4)
    x = jax.random.uniform(jax.random.key(1), (2, 8, 8, 1))
    params = jax.jit(model.init)(KEY, x)
    p = params["params"]
    stem = jax.nn.relu(
        jax.lax.conv_general_dilated(
            x, p["Conv_0"]["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        + p["Conv_0"]["bias"]
    )
    pooled = jnp.mean(stem[:, ::4, ::4, :], axis=(1, 2))  # two stride-2 stages
    pooled = jnp.pad(pooled, ((0, 0), (0, 12)))  # 4 → 16 channels, zero-padded
    expected = pooled @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"]
    # float32: the same few products and sums in a different order, |error| ≲ 1e-6
    np.testing.assert_allclose(jax.jit(model.apply)(params, x), expected, atol=1e-5)


def test_bad_configurations_raise():
    x = jnp.zeros((1, 8, 8, 1))
    with pytest.raises(ValueError, match="depth: must be 6n"):
        jax.eval_shape(snn.ResNet(10, depth=9).init, KEY, x)
    with pytest.raises(ValueError, match="NHWC"):
        jax.eval_shape(snn.CNN(10).init, KEY, jnp.zeros((1, 64)))
    with pytest.raises(ValueError, match="num_classes"):
        jax.eval_shape(snn.MLP(0).init, KEY, x)
