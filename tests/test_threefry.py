"""The unrolled Threefry (sgdsde._threefry) gives exactly jax.random's bits."""
import jax, jax.numpy as jnp, numpy as np, pytest
from sgdsde import _threefry


@pytest.mark.parametrize("seed", [0, 1, 2**31 - 1])
@pytest.mark.parametrize("data", [0, 1, 17, 2**31 - 1])
def test_fold_in_matches_jax(seed, data):
    keys = jax.vmap(lambda r: jax.random.fold_in(jax.random.key(seed), r))(jnp.arange(50, dtype=jnp.uint32))
    ours = jax.jit(_threefry.fold_in)(keys, jnp.int32(data))
    theirs = jax.vmap(lambda k: jax.random.fold_in(k, data))(keys)
    np.testing.assert_array_equal(jax.random.key_data(ours), jax.random.key_data(theirs))


@pytest.mark.parametrize("shape", [(), (1,), (2,), (3,), (4, 5), (1000,)])
def test_normal_matches_jax(shape):
    keys = jax.random.split(jax.random.key(3), 64)
    ours = jax.jit(jax.vmap(lambda k: _threefry.normal(k, shape, jnp.float32)))(keys)
    theirs = jax.vmap(lambda k: jax.random.normal(k, shape, jnp.float32))(keys)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))


def test_fallbacks():
    key = jax.random.key(0, impl="rbg")
    np.testing.assert_array_equal(_threefry.normal(key, (3,), jnp.float32), jax.random.normal(key, (3,), jnp.float32))
    keys = jax.random.split(key, 4)
    np.testing.assert_array_equal(jax.random.key_data(_threefry.fold_in(keys, 5)),
                                  jax.random.key_data(jax.vmap(lambda k: jax.random.fold_in(k, 5))(keys)))


@pytest.mark.parametrize("shape", [(), (1,), (3,), (4, 5), (94218,)])
def test_rademacher_matches_jax(shape):
    keys = jax.random.split(jax.random.key(5), 16)
    ours = jax.jit(jax.vmap(lambda k: _threefry.rademacher(k, shape, jnp.float32)))(keys)
    theirs = jax.vmap(lambda k: jax.random.rademacher(k, shape, jnp.float32))(keys)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    assert set(np.unique(np.asarray(ours))) <= {-1.0, 1.0}


def test_rademacher_under_x64_is_jax_random():
    # with x64 on, bernoulli(½) draws a float64 uniform (64-bit draws): the fallback
    with jax.enable_x64(True):
        key = jax.random.key(7)
        np.testing.assert_array_equal(np.asarray(_threefry.rademacher(key, (1000,), jnp.float64)),
                                      np.asarray(jax.random.rademacher(key, (1000,), jnp.float64)))


@pytest.mark.parametrize("num", [1, 2, 100, 1000])
def test_split_key_matches_jax(num):
    key = jax.random.key(11)
    theirs = jax.random.key_data(jax.random.split(key, num))
    picks = sorted({0, num // 2, num - 1})
    ours = jax.jit(lambda i: jax.random.key_data(_threefry.split_key(key, num, i)))
    for i in picks:
        np.testing.assert_array_equal(np.asarray(ours(i)), np.asarray(theirs[i]))
    rbg = jax.random.key(0, impl="rbg")  # fallback
    np.testing.assert_array_equal(jax.random.key_data(_threefry.split_key(rbg, num, num - 1)),
                                  jax.random.key_data(jax.random.split(rbg, num)[num - 1]))
