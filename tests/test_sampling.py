"""Minibatch samplers (docs/theory.md §1): iid (with replacement), subset (uniform S-subset),
epoch (random reshuffling). Checked on many batches drawn directly with make_sampler.

Monte-Carlo tolerances: chi-square statistics are compared with dof + 6·√(2·dof) (about
6 standard deviations of the χ² law; seeds are fixed, so the tests are deterministic),
and estimated moments with 4.5 standard errors estimated from the same samples."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sgdsde as sd
from sgdsde.sampling import SAMPLINGS, batch_weights, make_sampler


# ------------------------------------------------------------------ helpers
# Compiles dominate the cost of these tests, so every test draws from a few shared
# configurations: N = 50 examples, 12 consecutive steps, R = 20000 replicas, drawn at
# max size 16 (and 8 for the prefix check). The jitted drawers are cached per
# (sampling, N, max size); batch sizes are traced, so a batch-size schedule reuses them.
N, STEPS, R = 50, 12, 20000


@functools.lru_cache(maxsize=None)
def _sequence_fn(sampling, num_examples, max_size):
    sampler = make_sampler(sampling)

    @jax.jit
    def run(keys, sizes):
        def one(key):
            def body(state, inputs):
                k, size = inputs
                indices, state = sampler.draw(jax.random.fold_in(key, k), state, num_examples, size, max_size)
                position = state.position if sampling == "epoch" else jnp.int32(0)
                return state, (indices, position)

            steps = jnp.arange(sizes.shape[0])
            return jax.lax.scan(body, sampler.init(num_examples), (steps, sizes))[1]

        return jax.vmap(one)(keys)

    return run


def _draw_sequences(sampling, num_examples, batch_sizes, max_size, replicas, seed):
    """Consecutive draws (step k uses fold_in(key_r, k), as the runner does) for each replica,
    from a fresh sampler state: indices (replicas, steps, max_size) and the epoch sampler's
    position after each step (zeros for the others)."""
    keys = jax.random.split(jax.random.key(seed), replicas)
    indices, positions = _sequence_fn(sampling, num_examples, max_size)(keys, jnp.asarray(batch_sizes, jnp.int32))
    return np.asarray(indices), np.asarray(positions)


@pytest.fixture(scope="module")
def draws():
    """{sampling: (indices (R, 12, 16), positions (R, 12))} at S = 8, N = 50, max size 16."""
    return {s: _draw_sequences(s, N, [8] * STEPS, 16, R, seed=1) for s in SAMPLINGS}


def _chi2_bound(dof):
    return dof + 6 * math.sqrt(2 * dof)


def _mean_and_stderr(samples):
    samples = np.asarray(samples, np.float64)
    return samples.mean(), samples.std(ddof=1) / math.sqrt(samples.size)


# ------------------------------------------------------------------ basics
def test_unknown_sampling():
    assert set(SAMPLINGS) == {"iid", "subset", "epoch"}
    with pytest.raises(ValueError, match="sampling"):
        make_sampler("shuffle")


def test_batch_weights_mask():
    w = batch_weights(jnp.int32(3), 5)
    np.testing.assert_allclose(w, [1 / 3, 1 / 3, 1 / 3, 0, 0], rtol=1e-7)
    assert w.dtype == jnp.float32
    assert batch_weights(jnp.int32(5), 5, jnp.float16).dtype == jnp.float16


@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_indices_in_range(draws, sampling):
    # S = 8 drawn at max size 16 over 12 steps: the epoch sampler restarts every 6 batches
    # and at position 40 its padded slots run past the end of the order (40 + 16 > 50).
    # Every index, used or masked, must be a valid example index.
    indices, _ = draws[sampling]
    assert indices.shape == (R, STEPS, 16)
    assert indices.min() >= 0 and indices.max() < N
    assert len(np.unique(indices[:100, :, :8])) == N  # and every example does occur


def test_subset_has_no_repeats(draws):
    s = np.sort(draws["subset"][0][:, :, :8], axis=2)
    assert np.all(np.diff(s, axis=2) > 0)


def test_iid_repeats_at_the_with_replacement_rate(draws):
    """With replacement, P(no repeat among S draws from N) = Π_{i<S} (1 − i/N): for N = 50,
    S = 8 that is 0.5541. Binomial standard error over R = 20000 batches ≈ 0.0035; the
    without-replacement rate 1 is ≈ 130 standard errors away."""
    first = np.sort(draws["iid"][0][:, 0, :8], axis=1)
    no_repeat = np.all(np.diff(first, axis=1) > 0, axis=1)
    p = np.prod(1 - np.arange(8) / N)
    assert abs(no_repeat.mean() - p) < 4.5 * math.sqrt(p * (1 - p) / R)


@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_inclusion_frequencies_uniform(draws, sampling):
    """Counts of each example over the first batch of R = 20000 replicas (N = 50, S = 8):
    Σ (c − E)²/E with E = RS/N = 3200 is ≤ χ²_{N−1} in distribution (exactly χ² for iid;
    smaller for the without-replacement samplers). Power: an example that is never drawn
    adds E = 3200 to the statistic, far above the bound 108."""
    first = draws[sampling][0][:, 0, :8]
    counts = np.bincount(first.ravel(), minlength=N)
    expected = R * 8 / N
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert chi2 < _chi2_bound(N - 1), chi2


@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_batch_sequence_does_not_depend_on_max_size(draws, sampling):
    """The first S indices of a draw at max size 16 equal the draw at max size S = 8, at
    the first step and at every later one: a run at S = 8 sees the same batches whether
    drawn alone or inside a grid at a larger max size (epoch too: masked slots must not
    disturb the order)."""
    small, _ = _draw_sequences(sampling, N, [8] * STEPS, 8, R, seed=1)
    np.testing.assert_array_equal(draws[sampling][0][:, :, :8], small)


# ------------------------------------------------------------------ epoch structure
def test_epoch_covers_distinct_examples(draws):
    """N = 50, S = 8: m = ⌊N/S⌋ = 6 batches per epoch, no index repeated within an epoch,
    each epoch covers mS = 48 distinct examples, and the epoch's position advances by S and
    restarts when fewer than S examples are left. (S dividing N is covered by the
    permutation test below.)"""
    s, m = 8, 6
    indices, positions = draws["epoch"]
    used = indices[:, :, :s]
    for e in range(STEPS // m):
        block = np.sort(used[:, e * m : (e + 1) * m].reshape(R, m * s), axis=1)
        assert np.all(np.diff(block, axis=1) > 0)  # 48 distinct per replica and epoch
    np.testing.assert_array_equal(positions, np.tile(s * (1 + np.arange(m)), (R, STEPS // m)))
    # only N − mS = 2 examples are left after an epoch, so the 8 of the next batch must
    # reuse ≥ 6 earlier ones: a new epoch did start, for every replica
    first_epoch = used[:, :m].reshape(R, -1)
    for a, b in zip(first_epoch[:300], used[:300, m]):
        assert len(set(a) & set(b)) >= s - 2
    # and which 2 examples an epoch drops is random: each is dropped with probability 2/50
    dropped = np.ones((R, N), bool)
    np.put_along_axis(dropped, first_epoch, False, axis=1)
    assert np.all(dropped.sum(axis=1) == 2)
    rate = dropped.mean(axis=0)  # binomial stderr √(0.04·0.96/R) = 0.0014 per example
    assert np.all(np.abs(rate - 2 / N) < 5 * math.sqrt(0.04 * 0.96 / R))


def test_epoch_order_dtype_does_not_change_the_draws(monkeypatch):
    """The stored order is uint16 while N ≤ 2¹⁶ (half the memory of int32) and int32 above;
    the type only stores example numbers, so forcing int32 at N = 50 gives the same index
    sequences bit for bit, and the indices are int32 either way."""
    sampler = make_sampler("epoch")
    assert sampler.init(2**16).order.dtype == jnp.uint16
    assert sampler.init(2**16 + 1).order.dtype == jnp.int32
    keys = jax.random.split(jax.random.key(4), 50)

    def sequences():
        def one(key):
            def body(state, k):
                indices, state = sampler.draw(jax.random.fold_in(key, k), state, N, jnp.int32(8), 8)
                return state, indices
            return jax.lax.scan(body, sampler.init(N), jnp.arange(14))[1]
        return jax.jit(jax.vmap(one))(keys)

    small = sequences()
    monkeypatch.setattr(sampling, "_order_dtype", lambda num_examples: jnp.int32)
    wide = sequences()
    assert small.dtype == wide.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(small), np.asarray(wide))


def test_epoch_above_uint16_range_is_a_permutation():
    """N = 2¹⁶ + 4 (int32 order, example numbers beyond uint16): one epoch of S = N/4
    batches covers every example exactly once."""
    n = 2**16 + 4
    sampler = make_sampler("epoch")

    @jax.jit
    def epoch(key):
        def body(state, k):
            indices, state = sampler.draw(jax.random.fold_in(key, k), state, n, jnp.int32(n // 4), n // 4)
            return state, indices
        return jax.lax.scan(body, sampler.init(n), jnp.arange(4))[1]

    seen = np.sort(np.asarray(epoch(jax.random.key(2))).ravel())
    np.testing.assert_array_equal(seen, np.arange(n))


def test_epoch_with_varying_batch_size():
    """A cyclic batch size (8, 16, 8, 16, …) with N = 50: a new epoch starts exactly when the
    next batch does not fit in what is left (position + S > N), and no example repeats
    within an epoch."""
    sizes = [8, 16] * (STEPS // 2)
    indices, positions = _draw_sequences("epoch", N, sizes, 16, R, seed=8)
    position, expected, epoch_of = N + 1, [], []
    epoch = -1
    for size in sizes:
        if position + size > N:
            position, epoch = 0, epoch + 1
        position += size
        expected.append(position)
        epoch_of.append(epoch)
    assert len(set(epoch_of)) >= 3  # the schedule does cross epochs
    np.testing.assert_array_equal(positions, np.tile(expected, (R, 1)))
    for e in set(epoch_of):
        members = np.concatenate([indices[:, k, : sizes[k]] for k in range(STEPS) if epoch_of[k] == e], axis=1)
        members = np.sort(members, axis=1)
        assert np.all(np.diff(members, axis=1) > 0)


def test_epoch_order_is_a_uniform_permutation():
    """Exact random reshuffling: N = 6, S = 2 (three batches per epoch, S divides N), drawn
    at max size 4 so masked slots are exercised. Each epoch's order must be uniform over the
    6! = 720 permutations, for the first epoch and for the second (which starts from the
    first's order). R = 30000 replicas: E = 41.7 per permutation, χ²_{719} bound 947;
    e.g. a sampler that never leaves an example in place would miss 265 of the 720."""
    n, r = 6, 30000
    indices, _ = _draw_sequences("epoch", n, [2] * 6, 4, r, seed=9)
    used = indices[:, :, :2]
    for e in range(2):
        perms = used[:, 3 * e : 3 * e + 3].reshape(r, n)
        assert np.all(np.sort(perms, axis=1) == np.arange(n))  # each epoch covers all N
        code = perms @ (n ** np.arange(n))  # a unique integer per permutation
        _, counts = np.unique(code, return_counts=True)
        assert len(counts) == 720
        expected = r / 720
        chi2 = np.sum((counts - expected) ** 2 / expected)
        assert chi2 < _chi2_bound(719), (e, chi2)


# ------------------------------------------------------------------ noise moments
X = np.random.default_rng(10).standard_normal(N)  # a fixed "per-example gradient" x_i
VAR_X = X.var()  # (1/N) Σ (x_i − x̄)²: the 1-D C


@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_within_batch_variance(draws, sampling):
    """Var(x̄_batch) = Var/S (iid) and (Var/S)(N−S)/(N−1) (subset, epoch), S = 8. The
    estimate's standard error std((m − m̄)²)/√R is ≈ 1 % here, while the two formulas differ
    by (N−S)/(N−1) = 0.857, i.e. by > 10 standard errors: the check tells them apart."""
    means = X[draws[sampling][0][:, 0, :8]].mean(axis=1)
    iid = VAR_X / 8
    finite = iid * (N - 8) / (N - 1)
    expected, other = (iid, finite) if sampling == "iid" else (finite, iid)
    np.testing.assert_allclose(means.mean(), X.mean(), atol=4.5 * math.sqrt(expected / R))
    estimate, stderr = _mean_and_stderr((means - means.mean()) ** 2)
    assert abs(estimate - expected) < 4.5 * stderr, (estimate, expected, stderr)
    assert abs(estimate - other) > 6 * stderr


@pytest.mark.parametrize("sampling", SAMPLINGS)
def test_consecutive_batch_covariance(draws, sampling):
    """Cov(ξ_j, ξ_k) = −Var/(N−1) for two batches of one epoch (j ≠ k; the pair-inclusion
    probability of a permutation), 0 for iid and subset (fresh draws). Batches 0 and 1 of
    each replica; standard error of the sample covariance from the products (a−ā)(b−b̄),
    ≈ Var(x̄)/√R, i.e. ≈ Var/(N−1)/25 at N = 50, S = 8, R = 20000: the anticorrelation
    is resolved at ≈ 25 σ."""
    means = X[draws[sampling][0][:, :2, :8]].mean(axis=2)
    a, b = means[:, 0] - means[:, 0].mean(), means[:, 1] - means[:, 1].mean()
    estimate, stderr = _mean_and_stderr(a * b)
    expected = -VAR_X / (N - 1) if sampling == "epoch" else 0.0
    assert abs(estimate - expected) < 4.5 * stderr, (estimate, expected, stderr)
    assert VAR_X / (N - 1) > 10 * stderr  # power: −Var/(N−1) and 0 are told apart


# ------------------------------------------------------------------ subset: exact uniformity
import itertools  # noqa: E402

from sgdsde import _native, _threefry, sampling  # noqa: E402


def _subset_batches(num_examples, batch_size, max_size, replicas, seed):
    draw = make_sampler("subset").draw
    keys = jax.random.split(jax.random.key(seed), replicas)
    fn = jax.jit(jax.vmap(lambda k: draw(k, (), num_examples, jnp.int32(batch_size), max_size)[0]))
    return np.asarray(fn(keys))


def test_uniform_below_is_the_64_bit_product():
    """c = ⌊(x_hi·2³² + x_lo)·span/2⁶⁴⌋ from the Threefry block at counter t, checked
    against exact Python integers for spans up to 2³¹ − 1 (no rounding anywhere)."""
    key = jax.random.key(5)
    counters = jnp.arange(1000, dtype=jnp.uint32) * 7919
    raw = jax.random.key_data(key)
    hi, lo = (np.asarray(x).astype(object) for x in
              _threefry._threefry2x32(raw[0], raw[1], jnp.zeros_like(counters), counters))
    for span in (1, 6, 1000, 50_000, 65_537, 2**24 + 3, 2**31 - 1):
        ours = np.asarray(jax.jit(_threefry.uniform_below, static_argnums=2)(key, counters, span))
        exact = np.array([((int(h) << 32 | int(l)) * span) >> 64 for h, l in zip(hi, lo)])
        np.testing.assert_array_equal(ours, exact)


def _force_path(monkeypatch, path):
    """Make the subset sampler run in JAX (not the native CPU kernel, sgdsde/_native) and
    _first_distinct take one method whatever the sizes: pairwise (L ≤ _PAIRWISE_MAX),
    then first occurrences by blocked compares (L ≤ _BLOCKED_MAX), table (N ≤ _TABLE_RATIO·L),
    blocked compares again (L ≤ _BLOCKED_LONG_MAX) or sort. ``"native"``: the native kernel
    (skipped where it is not available)."""
    if path == "native":
        if not _native.available():
            pytest.skip("native sampler kernels not available here")
        return
    monkeypatch.setattr(sampling, "_native_applies", lambda key: False)
    later = ["pairwise", "blocked", "table", "sort"]
    for name, constant in zip(later[:-1], ["_PAIRWISE_MAX", "_BLOCKED_MAX", "_TABLE_RATIO"]):
        if later.index(path) > later.index(name):
            monkeypatch.setattr(sampling, constant, 0)
    if path == "sort":
        monkeypatch.setattr(sampling, "_BLOCKED_LONG_MAX", 0)


def _first_distinct_reference(stream, empty, count):
    firsts = [v for v in dict.fromkeys(stream) if v != empty][:count]
    return firsts + [empty] * (count - len(firsts))


PATHS = ["pairwise", "blocked", "table", "sort"]


@pytest.mark.parametrize("path", PATHS)
def test_first_distinct_of_every_stream_is_exactly_uniform(monkeypatch, path):
    """The exact argument, with no Monte Carlo. The subset sampler returns the first M
    distinct values of an iid uniform stream. Enumerate EVERY stream of length L over N
    values and the padding value N (N = 4, L = 6: 5⁶ = 15625 streams; the padding occurs
    when a stream is continued) and run the sampler's own deduplication, each method in
    turn: it must return the first M distinct values other than N in order of first
    occurrence. And on the 4⁶ = 4096 equally likely streams without padding, every ordered
    M-sequence without repetition must be the outcome of exactly the same number of streams
    (for each M ≤ N), streams with fewer than M distinct values being reported as short.
    Since this holds for every L and the stream is read until M distinct values are found,
    the law is exactly uniform over ordered sequences, hence over subsets (each prefix too)."""
    n, length = 4, 6
    _force_path(monkeypatch, path)
    streams = np.array(list(itertools.product(range(n + 1), repeat=length)), np.int32)
    unpadded = np.all(streams < n, axis=1)
    for m in range(1, n + 1):
        out = np.asarray(jax.jit(jax.vmap(lambda s: sampling._first_distinct(s, n, m)))(streams))
        expected = np.array([_first_distinct_reference(list(s), n, m) for s in streams])
        np.testing.assert_array_equal(out, expected)  # the first-occurrence order, padding skipped
        full = out[unpadded][:, -1] < n
        distinct = np.array([len(set(s)) for s in streams[unpadded]])
        np.testing.assert_array_equal(full, distinct >= m)
        _, counts = np.unique(out[unpadded][full], axis=0, return_counts=True)
        assert len(counts) == math.perm(n, m) and np.all(counts == counts[0]), (m, counts)


@pytest.mark.parametrize("length", [1, 31, 32, 33, 96, 137, 600])
def test_prefix_count_equals_cumsum(length):
    """The rank of first occurrences, by blocked triangular products, is the exact integer
    prefix sum (0/1 terms, sums < 2²⁴ in float32): equal to np.cumsum for lengths around and
    across the block size, under vmap, all-ones (the largest sums) included."""
    rng = np.random.default_rng(length)
    flags = rng.random((50, length)) < 0.7
    flags[0] = True
    out = np.asarray(jax.jit(jax.vmap(sampling._prefix_count))(jnp.asarray(flags)))
    np.testing.assert_array_equal(out, np.cumsum(flags, axis=1))


@pytest.mark.parametrize("path", ["blocked", "sort"])
def test_first_distinct_of_large_values(monkeypatch, path):
    """Values too large for uint16 (blocked compares in int32) or to pack value·L + position
    into int32 (the two-key sort) give the same results: N = 2²⁸, L = 80, streams with many
    repeats and padding."""
    _force_path(monkeypatch, path)
    empty, length, count = 2**28, 80, 30
    rng = np.random.default_rng(0)
    pools = rng.integers(0, empty + 1, size=(200, 36))  # 36 candidate values per stream (padding too)
    pools[:, 0] = empty
    streams = np.take_along_axis(pools, rng.integers(0, 36, size=(200, length)), axis=1).astype(np.int32)
    out = np.asarray(jax.jit(jax.vmap(lambda s: sampling._first_distinct(s, empty, count)))(jnp.asarray(streams)))
    np.testing.assert_array_equal(out, [_first_distinct_reference(list(s), empty, count) for s in streams])


@pytest.mark.parametrize("num_examples,max_size", [(10_000, 128), (256, 128), (10_000, 512)])
def test_first_distinct_at_benchmark_sizes(num_examples, max_size):
    """At the sizes where the default method changes (blocked compares at L = 137 and
    L = 551 in uint16, the table at L = 232), the sampler's own stream pieces give the
    first M distinct values in order, as the plain Python reference does."""
    length = sampling._stream_length(num_examples, max_size)
    keys = jax.random.split(jax.random.key(8), 40)
    streams = np.asarray(jax.vmap(lambda k: _threefry.uniform_below(
        k, jnp.arange(length, dtype=jnp.uint32), num_examples))(keys))
    out = np.asarray(jax.jit(jax.vmap(lambda s: sampling._first_distinct(s, num_examples, max_size)))(streams))
    np.testing.assert_array_equal(out, [_first_distinct_reference(list(s), num_examples, max_size)
                                        for s in streams])


@pytest.mark.parametrize("path", PATHS + ["native"])
def test_subset_is_uniform_over_all_subsets(monkeypatch, path):
    """N = 6, S = 3 drawn at max size 5 (so the prefix is what is tested), with each
    deduplication method of _first_distinct: counts of each
    of the C(6,3) = 20 subsets and of each of the 6·5·4 = 120 ordered triples over
    R = 24000 keys. Multinomial χ² with E = 1200 (subsets) and 200 (triples) against
    dof + 6·√(2·dof), about 6 standard deviations of the χ² law (fixed seed)."""
    r = 24000
    _force_path(monkeypatch, path)
    first = _subset_batches(6, 3, 5, r, seed=21)[:, :3]
    for code, cells in ((np.sort(first, axis=1) @ (6 ** np.arange(3)), math.comb(6, 3)),
                        (first @ (6 ** np.arange(3)), math.perm(6, 3))):
        _, counts = np.unique(code, return_counts=True)
        assert len(counts) == cells
        chi2 = np.sum((counts - r / cells) ** 2 / (r / cells))
        assert chi2 < _chi2_bound(cells - 1), (cells, chi2)


@pytest.mark.parametrize("num_examples,max_size", [(1, 1), (7, 1), (5, 5), (40, 40), (300, 17), (2000, 64), (300, 200)])
def test_subset_distinct_and_prefix_consistent(num_examples, max_size):
    """Distinct, in-range indices for S = 1 … N, and the first S of a draw at max size M
    equal the draw at max size S (same stream, whatever M)."""
    batches = _subset_batches(num_examples, max_size, max_size, 500, seed=3)
    assert batches.min() >= 0 and batches.max() < num_examples
    assert np.all(np.diff(np.sort(batches, axis=1), axis=1) > 0)
    half = max(1, max_size // 2)
    np.testing.assert_array_equal(_subset_batches(num_examples, half, half, 500, seed=3), batches[:, :half])


@pytest.mark.parametrize("path", PATHS)
def test_subset_stream_read_in_small_pieces_is_the_same(monkeypatch, path):
    """Reading the stream in pieces of 3 draws (so that the continuation loop runs many
    times, deduplicating the values found so far followed by the new piece, padding
    included) gives the same batches as the usual single piece, with each deduplication
    method of _first_distinct."""
    usual = _subset_batches(20, 12, 12, 300, seed=4)
    _force_path(monkeypatch, path)
    monkeypatch.setattr(sampling, "_stream_length", lambda n, m: 3)
    np.testing.assert_array_equal(_subset_batches(20, 12, 12, 300, seed=4), usual)


@pytest.mark.parametrize("max_size", [4, 40])  # the pairwise (L ≤ 32) and the blocked paths
def test_subset_indices_are_int32_under_x64(max_size):
    """Under float64 (x64) NumPy-style promotion would make sums int64; the sampler's
    while_loop carry needs int32 either way (a regression: x64 runs failed to trace)."""
    with jax.enable_x64(True):
        problem = sd.problems.quadratic(np.eye(2), np.eye(2), 64, key=jax.random.key(0))
        result = sd.run(jax.random.key(1), sd.sgd("subset"), problem, sd.Hyper(0.1, max_size), jnp.zeros(2), 3,
                        replicas=2)
    assert np.all(np.isfinite(result["endpoint"]))
