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
