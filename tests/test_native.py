"""The native CPU kernels of the samplers without replacement (sgdsde/_native): the same
bits as the pure-JAX samplers (integers: exact equality, no rounding), under vmap, for
every code path of the kernels, and the switch that turns them off. The statistical and
exact-count tests of tests/test_sampling.py run through the kernels on CPU."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sgdsde import _native, sampling

pytestmark = pytest.mark.skipif(not _native.available(), reason="no C++ compiler: native kernels not built")


@pytest.mark.parametrize("num_examples,max_size", [(1, 1), (7, 7), (40, 3), (256, 128), (1000, 512), (70_000, 40)])
def test_subset_kernel_equals_the_jax_sampler(num_examples, max_size):
    """The first max_size distinct values of the stream, for 64 keys: the kernel (drawing
    min(32, missing) values at a time, a bitset per thread) and the JAX deduplication of
    the stream in pieces give the same int32 indices. Sizes: S = N (the whole coupon
    collection), tiny and large N, N above 2¹⁶."""
    keys = jax.random.split(jax.random.key(num_examples), 64)
    native = jax.jit(jax.vmap(lambda k: sampling._subset_draw(k, (), num_examples, jnp.int32(max_size), max_size)[0]))
    plain = jax.jit(jax.vmap(lambda k: sampling._subset_stream(k, num_examples, jnp.int32(max_size), max_size)))
    a, b = np.asarray(native(keys)), np.asarray(plain(keys))
    assert a.dtype == b.dtype == np.int32
    np.testing.assert_array_equal(a, b)


def _epoch_steps(draw, num_examples, sizes, max_size, replicas=48, seed=0):
    keys = jax.random.split(jax.random.key(seed), replicas)
    states = jax.vmap(lambda _: sampling._epoch_init(num_examples))(jnp.arange(replicas))
    step = jax.jit(jax.vmap(lambda k, s, b: draw(k, s, num_examples, b, max_size), in_axes=(0, 0, None)))
    out = []
    for k, size in enumerate(sizes):
        indices, states = step(jax.vmap(lambda key: jax.random.fold_in(key, k))(keys), states, jnp.int32(size))
        out.append((np.asarray(indices), np.asarray(states.order), np.asarray(states.position)))
    return out


@pytest.mark.parametrize("num_examples,sizes,max_size", [
    (10, [3, 3, 3, 3, 10, 1], 10),  # drop-last and new epochs, S = N
    (50, [8, 16, 5, 50, 7, 8], 64),  # masked slots (S < max size), varying S, pipelined (S ≤ 64)
    (300, [100, 70, 90, 80], 128),  # S > 64: partners drawn ahead within the replica
    (70_000, [33, 33, 20], 40),  # int32 order (N > 2¹⁶)
])
def test_epoch_kernel_equals_the_jax_sampler(num_examples, sizes, max_size):
    """Consecutive steps of the per-replica Fisher–Yates shuffle: the kernel (in place,
    replicas pipelined 8 ahead) and the JAX swaps give the same indices, stored orders and
    positions after every step, including the masked entries beyond S."""
    native = _epoch_steps(sampling._epoch_draw, num_examples, sizes, max_size)
    plain = _epoch_steps(sampling._epoch_swaps, num_examples, sizes, max_size)
    for (i1, o1, p1), (i2, o2, p2) in zip(native, plain):
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(p1, p2)


def test_the_kernel_is_in_the_compiled_program():
    """On CPU the compiled subset and epoch steps call the kernels (not the JAX path), so
    the equality tests above compare two different programs."""
    key = jax.random.key(0)
    text = jax.jit(lambda k: sampling._subset_draw(k, (), 100, jnp.int32(10), 10)[0]).lower(key).as_text()
    assert _native.SUBSET in text
    state = sampling._epoch_init(100)
    text = jax.jit(lambda k, s: sampling._epoch_draw(k, s, 100, jnp.int32(10), 10)).lower(key, state).as_text()
    assert _native.EPOCH in text


def test_switched_off_by_the_environment():
    """SGDSDE_NATIVE=0: the kernels are not used (the JAX path, the same numbers)."""
    code = ("import jax, jax.numpy as jnp; from sgdsde import _native, sampling; "
            "print(_native.available(), _native.SUBSET in jax.jit(lambda k: sampling._subset_draw("
            "k, (), 100, jnp.int32(10), 10)[0]).lower(jax.random.key(0)).as_text())")
    env = {**os.environ, "SGDSDE_NATIVE": "0", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]


def test_library_is_cached_per_source(tmp_path, monkeypatch):
    """The compiled file's name hashes the source (and jaxlib and the machine), in the cache
    directory $SGDSDE_CACHE_DIR: a changed kernel is never loaded from a stale file."""
    monkeypatch.setenv("SGDSDE_CACHE_DIR", str(tmp_path))
    path = _native.library_path()
    assert path.parent == tmp_path and path.suffix == ".so"
    monkeypatch.setattr(_native, "_SOURCE", tmp_path / "other.cc")
    (tmp_path / "other.cc").write_text("// another kernel\n")
    assert _native.library_path() != path


def test_subset_above_the_bitset_cap_takes_the_jax_path(monkeypatch):
    """N above _NATIVE_SUBSET_MAX_N (the kernel's bitset would be N bits a thread): the
    compiled draw has no kernel call, and gives the same values."""
    key = jax.random.key(1)
    native = np.asarray(sampling._subset_draw(key, (), 1000, jnp.int32(20), 20)[0])
    monkeypatch.setattr(sampling, "_NATIVE_SUBSET_MAX_N", 999)
    lowered = jax.jit(lambda k: sampling._subset_draw(k, (), 1000, jnp.int32(20), 20)[0]).lower(key)
    assert _native.SUBSET not in lowered.as_text()
    np.testing.assert_array_equal(np.asarray(lowered.compile()(key)), native)
