"""Observers, through sgdsde.run: every statistic is recomputed in NumPy from the
snapshots (every step) of the same run, so the comparisons are exact (float64; the only
differences are summation order, ≤ 1e-12 relative) — in particular the pooled Welford
moments, the basin fractions, the histogram counts and the first-passage times."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sgdsde as sd
from sgdsde import observers as obs

from _rounding import rounding_atol

RTOL = 1e-12  # float64 pooled sums over ≤ 10³ terms: relative rounding ≲ 1e-13

GRID_LRS, GRID_SIZES = [0.05, 0.2], [4, 16]
GRID = (2, 2)
REPLICAS, STEPS = 6, 60
BURN, EVERY = 10, 3  # moments
B_BURN, B_EVERY = 5, 2  # basins and histograms
EDGES_W = [np.arange(-1.5, 1.5001, 0.25), np.arange(-0.5, 0.5001, 0.25)]  # dyadic: exact in any float
EDGES_B = np.arange(-0.5, 0.5001, 0.125)
THRESHOLD = 0.6  # first passage: w0 > THRESHOLD
NUM_EXAMPLES = 32


def _pytree_problem():
    """Params {"b": (), "w": (2,)}: L = 0.2((w0)² − 1)² + ½ w1² + ½ b², plus exactly
    centred per-example noise x_i·(b, w0, w1) with covariance I (a shallow double well
    in w0, so replicas move between the basins). Flattened order: (b, w0, w1)."""
    x = sd.problems.whitened_noise(NUM_EXAMPLES, 1.0 * np.eye(3), key=jax.random.key(0))

    def loss(p, x_i):
        w, b = p["w"], p["b"]
        return 0.2 * (w[0] ** 2 - 1) ** 2 + 0.5 * w[1] ** 2 + 0.5 * b**2 + x_i[0] * b + x_i[1:] @ w

    return sd.Problem(loss, jnp.asarray(x))


def _classify(p):
    return (p["w"][0] > 0).astype(jnp.int32)


def _flat(values):
    """Snapshot pytree {"b": (..., T, R), "w": (..., T, R, 2)} → (..., T, R, 3) as (b, w0, w1)."""
    return np.concatenate([values["b"][..., None], values["w"]], axis=-1)


def _selected(num_steps, burn_in, every):
    t = np.arange(num_steps + 1)
    return t[(t >= burn_in) & ((t - burn_in) % every == 0)]


@pytest.fixture(scope="module")
def main_run():
    """One x64 run over a (2, 2) grid of (η, S) with every observer attached."""
    with jax.enable_x64(True):
        problem = _pytree_problem()
        init = {"b": jnp.asarray(0.1), "w": jnp.array([0.0, -0.2])}
        observers = [
            obs.endpoint(),
            obs.snapshots(1),
            obs.snapshots(7)._replace(name="snap7"),
            obs.loss_curve(1),
            obs.loss_curve(4)._replace(name="loss4"),
            obs.moments(burn_in=BURN, every=EVERY),
            obs.moments(burn_in=BURN, every=EVERY, covariance="diagonal")._replace(name="moments_diag"),
            obs.moments(covariance="none")._replace(name="moments_none"),
            obs.moments()._replace(name="moments_all"),
            obs.basins(_classify, 2, burn_in=B_BURN, every=B_EVERY),
            obs.histogram(EDGES_W, coordinates=lambda p: p["w"], burn_in=B_BURN, every=B_EVERY),
            obs.histogram(EDGES_B, coordinates=lambda p: p["b"])._replace(name="hist_b"),
            obs.first_passage(lambda p: p["w"][0] > THRESHOLD),
        ]
        hyper = sd.Hyper.grid(GRID_LRS, GRID_SIZES)
        result = sd.run(jax.random.key(42), sd.sgd("subset"), problem, hyper, init, STEPS,
                        replicas=REPLICAS, observers=observers)
        snaps = jax.tree_util.tree_map(np.asarray, result["snapshots"]["values"])
        loss = jax.jit(jax.vmap(problem.loss))
        flat_snaps = jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[len(GRID) + 2:]), snaps)
        losses = np.asarray(loss(flat_snaps)).reshape(GRID + (STEPS + 1, REPLICAS))
        x = _flat(snaps)  # (..., T, R, 3) as (b, w0, w1)
        data = np.asarray(problem.data)  # (N, 3)
        # Σ|terms| of the loss, averaged over examples: deterministic part + Σ_j |x_ij θ_j|
        deterministic = 0.2 * (x[..., 1] ** 2 - 1) ** 2 + 0.5 * x[..., 2] ** 2 + 0.5 * x[..., 0] ** 2
        abs_terms = deterministic + np.abs(x) @ np.abs(data).mean(axis=0)
    return {"result": result, "init": init, "snaps": snaps, "x": x, "losses": losses, "abs_terms": abs_terms}


# ------------------------------------------------------------------ endpoint, snapshots
def test_endpoint_shapes_and_values(main_run):
    result = main_run["result"]
    end = result["endpoint"]
    assert end["b"].shape == GRID + (REPLICAS,) and end["w"].shape == GRID + (REPLICAS, 2)
    assert result.grid_shape == GRID and result.replicas == REPLICAS and result.clock == "steps"
    assert not result.any_diverged
    np.testing.assert_array_equal(end["w"], main_run["snaps"]["w"][:, :, -1])
    np.testing.assert_array_equal(end["b"], main_run["snaps"]["b"][:, :, -1])


def test_snapshots_times_and_values(main_run):
    result, snaps = main_run["result"], main_run["snaps"]
    times = result["snapshots"]["times"]
    assert times.shape == GRID + (STEPS + 1,)
    np.testing.assert_array_equal(times[0, 0], np.arange(STEPS + 1))
    assert snaps["w"].shape == GRID + (STEPS + 1, REPLICAS, 2)
    # t = 0 is the initial state, shared by every replica and configuration
    np.testing.assert_array_equal(snaps["w"][:, :, 0], np.broadcast_to([0.0, -0.2], GRID + (REPLICAS, 2)))
    np.testing.assert_array_equal(snaps["b"][:, :, 0], 0.1)
    # the run moved, differently per replica and per configuration
    assert np.all(np.std(snaps["w"][:, :, -1, :, 0], axis=-1) > 0)
    assert not np.allclose(snaps["w"][0, 0], snaps["w"][1, 1])
    # every 7 steps: times 0, 7, …, 56 and the same values
    snap7 = result["snap7"]
    np.testing.assert_array_equal(snap7["times"][1, 0], np.arange(0, STEPS + 1, 7))
    np.testing.assert_array_equal(snap7["values"]["w"], snaps["w"][:, :, ::7])
    np.testing.assert_array_equal(snap7["values"]["b"], snaps["b"][:, :, ::7])


def test_loss_curve_equals_problem_loss(main_run):
    result = main_run["result"]
    curve = result["loss_curve"]
    np.testing.assert_array_equal(curve["times"][0, 1], np.arange(STEPS + 1))
    assert curve["values"].shape == GRID + (STEPS + 1, REPLICAS)
    # the observer (vmapped over replicas inside the scan) and the separate jitted loss sum
    # the N = 32 per-example losses in different orders; the loss (as low as 1.6e-5) is a
    # cancellation of O(0.2) terms, so the bound scales with Σ|terms|, not with the loss:
    # (N + 8)·eps·(mean over examples of Σ|terms of l_i|) (tests/_rounding.py).
    abs_terms = main_run["abs_terms"]
    atol = rounding_atol(abs_terms, operations=NUM_EXAMPLES + 8)
    np.testing.assert_allclose(curve["values"], main_run["losses"], rtol=0, atol=atol)
    loss4 = result["loss4"]
    np.testing.assert_array_equal(loss4["times"][0, 0], np.arange(0, STEPS + 1, 4))
    np.testing.assert_array_equal(loss4["values"], curve["values"][:, :, ::4])


# ------------------------------------------------------------------ moments
def _numpy_moments(x, times):
    """x: (T, R, d) snapshots; pooled mean / covariance (ddof = 1) over the selected times
    and all replicas, and the replica-spread standard errors the observer documents."""
    sel = x[times]  # (n, R, d)
    n, r, d = sel.shape
    pooled = sel.reshape(n * r, d)
    mean = pooled.mean(axis=0)
    cov = np.cov(pooled, rowvar=False, ddof=1)
    replica_means = sel.mean(axis=0)  # (R, d)
    mean_stderr = replica_means.std(axis=0, ddof=1) / np.sqrt(r)
    centred = sel - mean
    per_replica = np.einsum("nri,nrj->rij", centred, centred) / n  # about the pooled mean
    spread = ((per_replica - per_replica.mean(axis=0)) ** 2).mean(axis=0)
    cov_stderr = np.sqrt(spread / (r - 1))
    return mean, cov, mean_stderr, cov_stderr, n


@pytest.mark.parametrize("name, burn_in, every", [("moments", BURN, EVERY), ("moments_all", 0, 1)])
def test_moments_equal_numpy_from_snapshots(main_run, name, burn_in, every):
    result, x = main_run["result"], main_run["x"]
    m = result[name]
    times = _selected(STEPS, burn_in, every)
    assert m["mean"].shape == GRID + (3,) and m["cov"].shape == GRID + (3, 3)
    for g in np.ndindex(*GRID):
        mean, cov, mean_stderr, cov_stderr, n = _numpy_moments(x[g], times)
        assert m["count"][g] == n and m["replicas_used"][g] == REPLICAS
        np.testing.assert_allclose(m["mean"][g], mean, rtol=RTOL, atol=RTOL * np.abs(x[g]).max())
        np.testing.assert_allclose(m["cov"][g], cov, rtol=1e-10, atol=1e-12 * np.abs(cov).max())
        np.testing.assert_allclose(m["mean_stderr"][g], mean_stderr, rtol=1e-9)
        np.testing.assert_allclose(m["cov_stderr"][g], cov_stderr, rtol=1e-8, atol=1e-14)


def test_moments_diagonal_and_none(main_run):
    result, x = main_run["result"], main_run["x"]
    diag, full, none = result["moments_diag"], result["moments"], result["moments_none"]
    assert diag["var"].shape == GRID + (3,) and "cov" not in diag
    np.testing.assert_allclose(diag["var"], np.diagonal(full["cov"], axis1=-2, axis2=-1), rtol=1e-10)
    np.testing.assert_allclose(diag["var_stderr"], np.diagonal(full["cov_stderr"], axis1=-2, axis2=-1), rtol=1e-8)
    np.testing.assert_array_equal(diag["mean"], full["mean"])
    assert "cov" not in none and "var" not in none
    for g in np.ndindex(*GRID):
        np.testing.assert_allclose(none["mean"][g], x[g].reshape(-1, 3).mean(axis=0), rtol=RTOL, atol=1e-14)
        assert none["count"][g] == STEPS + 1


# ------------------------------------------------------------------ basins
def test_basins_equal_numpy_from_snapshots(main_run):
    result, snaps = main_run["result"], main_run["snaps"]
    b = result["basins"]
    times = _selected(STEPS, B_BURN, B_EVERY)
    labels = (snaps["w"][..., 0] > 0).astype(int)  # (2, 2, T, R)
    assert b["fractions"].shape == GRID + (2,) and b["counts"].shape == GRID + (REPLICAS, 2)
    for g in np.ndindex(*GRID):
        sel = labels[g][times]  # (n, R)
        counts = np.stack([(sel == 0).sum(axis=0), (sel == 1).sum(axis=0)], axis=1)
        np.testing.assert_array_equal(b["counts"][g], counts)
        np.testing.assert_allclose(b["fractions"][g], counts.sum(axis=0) / counts.sum(), rtol=RTOL)
        per_replica = counts / counts.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(b["stderr"][g], per_replica.std(axis=0, ddof=1) / np.sqrt(REPLICAS),
                                   rtol=1e-9, atol=1e-15)
        np.testing.assert_array_equal(b["final"][g], labels[g][-1])
    # both basins are visited somewhere, so the fractions are not trivially 0/1
    assert 0.05 < b["fractions"][..., 1].mean() < 0.95


# ------------------------------------------------------------------ histograms
def test_histogram_counts_equal_numpy(main_run):
    result, snaps = main_run["result"], main_run["snaps"]
    h = result["histogram"]
    times = _selected(STEPS, B_BURN, B_EVERY)
    assert h["counts"].shape == GRID + (12, 4)
    for g in np.ndindex(*GRID):
        samples = snaps["w"][g][times].reshape(-1, 2)
        counts, _ = np.histogramdd(samples, bins=EDGES_W)
        np.testing.assert_array_equal(h["counts"][g], counts)
        total = len(samples)
        assert h["outside"][g] == total - counts.sum()
        volume = 0.25 * 0.25
        np.testing.assert_allclose(h["density"][g], counts / (total * volume), rtol=RTOL)
        # the density integrates to the fraction of samples inside the box
        np.testing.assert_allclose((h["density"][g] * volume).sum(), counts.sum() / total, rtol=RTOL)
    assert h["outside"].sum() > 0 and h["counts"].sum() > 0  # both branches exercised
    for e, expected in zip(h["edges"], EDGES_W):
        np.testing.assert_array_equal(e[0, 0], expected)


def test_histogram_1d_equals_numpy(main_run):
    result, snaps = main_run["result"], main_run["snaps"]
    h = result["hist_b"]
    for g in np.ndindex(*GRID):
        samples = snaps["b"][g].ravel()  # burn_in 0, every 1: all T·R samples
        counts, _ = np.histogram(samples, bins=EDGES_B)
        np.testing.assert_array_equal(h["counts"][g], counts)
        assert h["outside"][g] == samples.size - counts.sum()
        np.testing.assert_allclose(h["density"][g], counts / (samples.size * 0.125), rtol=RTOL)


# ------------------------------------------------------------------ first passage
def test_first_passage_equals_first_index(main_run):
    result, snaps = main_run["result"], main_run["snaps"]
    fp = result["first_passage"]
    inside = snaps["w"][..., 0] > THRESHOLD  # (2, 2, T, R)
    expected = np.where(inside.any(axis=2), inside.argmax(axis=2), -1)
    np.testing.assert_array_equal(fp["times"], expected)
    assert np.any(expected > 0) and np.any(expected == -1)  # hits and misses both occur
    for g in np.ndindex(*GRID):
        hit = expected[g][expected[g] >= 0]
        np.testing.assert_allclose(fp["hit_fraction"][g], len(hit) / REPLICAS, rtol=1e-7)  # float32 mean
        if len(hit):
            np.testing.assert_allclose(fp["mean_time"][g], hit.mean(), rtol=RTOL)
        if len(hit) > 1:
            np.testing.assert_allclose(fp["mean_time_stderr"][g], hit.std(ddof=1) / np.sqrt(len(hit)), rtol=1e-9)


# ------------------------------------------------------------------ diverged replicas
@pytest.fixture(scope="module")
def diverged_run():
    """L = θ⁴/4, η = 0.1: θ' = θ − 0.1 θ³ has an unstable 2-cycle at ±√20; started there,
    the gradient noise (σ² = 1) sends some replicas inwards (they converge) and the others
    outwards, where they blow up through huge but finite values (e.g. 5 → −7.5 → 35 →
    −4e3 → 7e9 → −3e28 → … → inf)."""
    with jax.enable_x64(True):
        problem = sd.problems.isotropic_landscape(lambda th: jnp.sum(th**4) / 4, 1, 1.0, 8, key=jax.random.key(1))
        observers = [
            obs.snapshots(1),
            obs.moments(),
            obs.basins(lambda th: (th[0] > 0).astype(jnp.int32), 2),
            obs.histogram([-2.0, -1.0, 0.0, 1.0, 2.0]),
            obs.first_passage(lambda th: th[0] < 0.5),
        ]
        with pytest.warns(sd.DivergenceWarning):
            result = sd.run(jax.random.key(0), sd.sgd("iid"), problem, sd.Hyper(0.1, 4), jnp.array([20**0.5]), 30,
                            replicas=16, observers=observers)
    x = result["snapshots"]["values"][:, :, 0]  # (T, R)
    assert 0 < result.diverged.sum() < 15, "need diverged and (at least 2) healthy replicas"
    t = np.arange(31)[:, None]
    # samples that count: all of a healthy replica; a diverged one up to its divergence step
    # k (the state after step k + 1 is non-finite, so the run froze it at θ_k)
    valid = ~result.diverged[None, :] | (t <= result.divergence_step[None, :])
    return result, x, valid


def test_diverged_replicas_are_left_out(diverged_run):
    """Statistics match NumPy on the snapshots restricted to the valid samples; moments drop
    a diverged replica entirely."""
    result, x, valid = diverged_run
    ok = ~result.diverged
    assert np.all(np.isfinite(x))  # frozen at the last finite state
    m = result["moments"]
    assert m["replicas_used"] == ok.sum()
    np.testing.assert_allclose(m["mean"], [x[:, ok].mean()], rtol=1e-12)
    labels = (x > 0).astype(int)
    counts = np.stack([((labels == k) & valid).sum(axis=0) for k in range(2)], axis=1)
    np.testing.assert_array_equal(result["basins"]["counts"], counts)
    np.testing.assert_allclose(result["basins"]["fractions"], counts[ok].sum(0) / counts[ok].sum(), rtol=1e-12)
    hist, _ = np.histogram(x[valid], bins=[-2.0, -1.0, 0.0, 1.0, 2.0])
    np.testing.assert_array_equal(result["histogram"]["counts"], hist)
    assert result["histogram"]["outside"] == valid.sum() - hist.sum()
    inside = (x < 0.5) & valid
    np.testing.assert_array_equal(result["first_passage"]["times"],
                                  np.where(inside.any(axis=0), inside.argmax(axis=0), -1))


def test_diverged_replicas_do_not_poison_moments(diverged_run):
    result, x, _ = diverged_run
    ok = ~result.diverged
    m = result["moments"]
    healthy = x[:, ok]
    np.testing.assert_allclose(m["cov"], [[healthy.var(ddof=1)]], rtol=1e-10)
    np.testing.assert_allclose(m["mean_stderr"], [healthy.mean(axis=0).std(ddof=1) / np.sqrt(ok.sum())], rtol=1e-9)
    assert np.all(np.isfinite(m["cov_stderr"]))


# ------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda: obs.snapshots(0), "every"),
        (lambda: obs.snapshots(-3), "every"),
        (lambda: obs.snapshots(2.5), "every"),
        (lambda: obs.loss_curve(0), "every"),
        (lambda: obs.moments(every=0), "every"),
        (lambda: obs.moments(burn_in=-1), "burn_in"),
        (lambda: obs.moments(burn_in=1.5), "burn_in"),
        (lambda: obs.moments(covariance="off"), "covariance"),
        (lambda: obs.basins(_classify, 0), "num_basins"),
        (lambda: obs.basins(_classify, 2, burn_in=-2), "burn_in"),
        (lambda: obs.basins(_classify, 2, every=0), "every"),
        (lambda: obs.histogram([0.0, 1.0], every=-1), "every"),
        (lambda: obs.histogram([0.0, 1.0], burn_in=-1), "burn_in"),
        (lambda: obs.histogram([1.0, 0.0]), "edges"),
        (lambda: obs.histogram([0.0, 1.0, 1.0]), "edges"),
        (lambda: obs.histogram([0.0]), "edges"),
        (lambda: obs.histogram([[0.0, 1.0], [0.0]]), "edges"),
        (lambda: obs.histogram(np.zeros((2, 2, 2))), "edges"),
    ],
)
def test_bad_arguments(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()


def test_numpy_integer_arguments_accepted():
    obs.snapshots(np.int64(3))
    obs.moments(burn_in=np.int32(2), every=np.int64(2))


def _tiny_run(observers, num_steps=5, replicas=2):
    problem = sd.problems.quadratic(np.eye(2), np.eye(2), 8, key=jax.random.key(0))
    return sd.run(jax.random.key(1), sd.sgd(), problem, sd.Hyper(0.1, 2), jnp.zeros(2), num_steps,
                  replicas=replicas, observers=observers)


def test_histogram_edges_must_match_coordinates():
    with pytest.raises(ValueError, match="edges"):
        _tiny_run([obs.histogram([0.0, 1.0, 2.0])])  # 1 axis of edges, 2 coordinates


def test_histogram_int32_overflow_guard():
    """replicas · (samples per replica) ≥ 2³¹ would overflow the int32 counts: 2¹⁶ replicas ×
    (2¹⁵ + 1) samples. Raised when the run starts, before the (long) scan."""
    with pytest.raises(ValueError, match="overflow"):
        _tiny_run([obs.histogram([-1.0, 0.0, 1.0], coordinates=lambda p: p[:1])], num_steps=2**15, replicas=2**16)


def test_duplicate_observer_names_rejected():
    with pytest.raises(ValueError, match="observers"):
        _tiny_run([obs.snapshots(1), obs.snapshots(2)])


def test_moments_burn_in_beyond_the_run():
    with pytest.raises(ValueError, match="burn_in"):
        _tiny_run([obs.moments(burn_in=10)], num_steps=5)


def test_bool_every_rejected():
    with pytest.raises(ValueError, match="every"):
        obs.snapshots(True)


# ------------------------------------------------------------------ no data: NaN, never 0
def test_statistics_without_data_are_nan_with_their_count():
    """Every replica diverges at its first step (θ' = θ − 0.1 θ³ from θ = 100): no statistic
    has data, so each is NaN (not 0) and its count says why."""
    problem = sd.problems.isotropic_landscape(lambda th: jnp.sum(th**4) / 4, 1, 1.0, 8, key=jax.random.key(1))
    observers = [
        obs.moments(),
        obs.moments(covariance="diagonal")._replace(name="moments_diag"),
        obs.basins(lambda th: (th[0] > 0).astype(jnp.int32), 2),
        obs.histogram([-2.0, 0.0, 2.0], burn_in=5),  # all diverge at step 2: no sample
        obs.first_passage(lambda th: jnp.abs(th[0]) < 1e-3),  # θ: 1e3, −1e8, 1e23, diverged
    ]
    with pytest.warns(sd.DivergenceWarning):
        result = sd.run(jax.random.key(0), sd.sgd("iid"), problem, sd.Hyper(0.1, 4), jnp.array([1e3]), 10,
                        replicas=4, observers=observers)
    assert result.diverged.all()
    m, d = result["moments"], result["moments_diag"]
    assert m["replicas_used"] == 0 and d["replicas_used"] == 0
    for value in (m["mean"], m["mean_stderr"], m["cov"], m["cov_stderr"], d["var"], d["var_stderr"]):
        assert np.all(np.isnan(value))
    b = result["basins"]
    assert b["replicas_used"] == 0 and np.all(np.isnan(b["fractions"])) and np.all(np.isnan(b["stderr"]))
    h = result["histogram"]
    assert np.all(np.isnan(h["density"])) and h["counts"].sum() == 0 and h["outside"] == 0
    fp = result["first_passage"]
    assert fp["hit_count"] == 0 and np.isnan(fp["mean_time"]) and np.isnan(fp["mean_time_stderr"])


@pytest.mark.parametrize("clock", ["steps", "sme"])
def test_first_passage_mean_is_nan_when_none_or_one_arrived(clock):
    """A region no replica reaches: mean NaN with hit_count 0. One replica, inside at the
    start: mean 0, but a standard error needs two arrivals, so it is NaN (not 0)."""
    never = _tiny_run([obs.first_passage(lambda p: p[0] > 1e6)], num_steps=5, replicas=3)
    fp = never.on_clock(clock)["first_passage"]
    assert fp["hit_count"] == 0 and np.isnan(fp["mean_time"]) and np.isnan(fp["mean_time_stderr"])
    one = _tiny_run([obs.first_passage(lambda p: p[0] > -1.0)], num_steps=5, replicas=1)
    fp = one.on_clock(clock)["first_passage"]
    assert fp["hit_count"] == 1 and fp["mean_time"] == 0.0 and np.isnan(fp["mean_time_stderr"])


def test_basin_label_out_of_range_is_an_error():
    """A classifier giving label 2 with num_basins = 2 is an error, not a dropped count."""
    with pytest.raises(ValueError, match=r"basins: classify returned a label outside \[0, num_basins = 2\)"):
        _tiny_run([obs.basins(lambda p: jnp.where(p[0] > 0, 2, 0), 2)], num_steps=20, replicas=4)
    with pytest.raises(ValueError, match="basins: classify"):
        _tiny_run([obs.basins(lambda p: jnp.int32(-1), 3)], num_steps=2)
