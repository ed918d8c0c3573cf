"""sgdsde._checks.memoize_abstract: the cache behind the checks that trace a user's
function before a run (sd.run's init check, the curvature functions' scalar check)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from sgdsde._checks import eval_shape_cached, memoize_abstract


def test_memoize_abstract_caches_by_structure_shape_and_dtype():
    calls = []

    @memoize_abstract
    def shapes(tree):
        calls.append(None)
        return jax.tree_util.tree_map(lambda x: (x.shape, str(x.dtype)), tree)

    tree = {"a": jnp.ones(3), "b": np.zeros((2, 2), np.float32)}
    assert shapes(tree) == {"a": ((3,), "float32"), "b": ((2, 2), "float32")}
    assert shapes({"a": jnp.zeros(3), "b": np.ones((2, 2), np.float32)}) == shapes(tree)  # values differ
    assert len(calls) == 1
    shapes({"a": jnp.ones(4), "b": tree["b"]})  # another shape
    shapes({"a": jnp.ones(3, jnp.int32), "b": tree["b"]})  # another dtype
    shapes({"c": jnp.ones(3), "b": tree["b"]})  # another structure
    assert len(calls) == 4


def test_memoize_abstract_failures_and_unhashable_leaves_are_not_cached():
    calls = []

    @memoize_abstract
    def fails(x):
        calls.append(None)
        raise ValueError("no")

    for _ in range(2):
        with pytest.raises(ValueError, match="no"):
            fails(jnp.ones(2))
    assert len(calls) == 2

    @memoize_abstract
    def count(tree):
        calls.append(None)
        return len(jax.tree_util.tree_leaves(tree))

    leaf = type("Opaque", (), {"__hash__": None})()  # an unhashable non-array leaf
    calls.clear()
    assert count({"x": jnp.ones(2), "o": leaf}) == 2
    assert count({"x": jnp.ones(2), "o": leaf}) == 2
    assert len(calls) == 2  # evaluated each time, no error


def test_eval_shape_cached_makes_a_partials_arrays_abstract():
    """A Partial's own arrays are traced like its arguments (as under jax.jit), so the
    cached result is that of jax.eval_shape and holds for other values of the same shapes."""
    fun = Partial(lambda w, x: jnp.sum(w * x.reshape(-1)), jnp.ones(6))
    out = eval_shape_cached(fun, jnp.ones((2, 3)))
    assert out == jax.eval_shape(fun, jnp.ones((2, 3)))
    assert out.shape == () and out.dtype == jnp.float32
    with pytest.raises(TypeError):  # other shapes: evaluated, and the failure raised
        eval_shape_cached(fun, jnp.ones((2, 4)))


def test_memoize_abstract_keys_on_x64():
    """Default dtypes inside fn follow jax_enable_x64, so the cache keeps the two apart."""
    zeros_dtype = memoize_abstract(lambda x: str(jnp.zeros(2).dtype))
    x = np.ones(2, np.float32)
    assert zeros_dtype(x) == "float32"
    with jax.enable_x64(True):
        assert zeros_dtype(x) == "float64"
    assert zeros_dtype(x) == "float32"
