"""sgdsde.curvature against dense linear algebra (float64).

Oracles: ``numpy.linalg.eigh`` of random SPD matrices A (loss ½xᵀAx, so H = A exactly)
and of a small tanh network's Hessian formed by ``jax.hessian`` on the flattened
parameters. Each tolerance is derived from the method's error, stated where used:
a-priori power-iteration and a-posteriori Lanczos bounds, Monte-Carlo standard errors
(z-tests at 4σ; the seeds are fixed, so every test is deterministic), Gauss-quadrature
exactness, finite-difference order, and float64 rounding.

Compiles are shared: the quadratic is one ``Partial`` whose matrix is an argument, so
all matrices of one size reuse one compiled program per method.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from jax.tree_util import Partial

from sgdsde import curvature as cv
from sgdsde.curvature import trace as cv_trace

from _rounding import rounding_atol

Z = 4.0  # z-test threshold (two-sided P ≈ 6e-5 per test under the null)
D = 40  # size of the random SPD matrices
TOP = np.array([20.0, 14.0, 10.0])  # separated top eigenvalues; the bulk lies in [0.5, 4]
M = 20  # Lanczos steps in every test (one compiled program per loss)
ROUND = 1e-10  # float64 rounding of O(d)-term sums of O(‖A‖) numbers, relative to ‖A‖ (≈ d·eps ≈ 1e-14, with margin)


def _quadratic(a, x):
    return 0.5 * x @ (a @ x)


def _spd(seed: int, top=TOP, d: int = D, low: float = 0.5, high: float = 4.0):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    lam = np.concatenate([top, rng.uniform(low, high, d - len(top))])
    return (q * lam) @ q.T, np.sort(lam)[::-1]


@pytest.fixture(scope="module")
def spd():
    with jax.enable_x64(True):
        a, lam = _spd(0)
        fun = Partial(_quadratic, jnp.asarray(a))
        x = jnp.asarray(np.random.default_rng(1).normal(size=D))
    return {"a": a, "lam": lam, "fun": fun, "x": x}


def _mlp_loss(data, p):
    x, y = data
    h = jnp.tanh(x @ p["w1"] + p["b1"])
    return 0.5 * jnp.mean(jnp.sum((h @ p["w2"] + p["b2"] - y) ** 2, axis=-1))


def _shifted_mlp_loss(data_and_shift, p):
    """The MLP loss + (c/2)‖θ‖²: Hessian H + c I (c is an argument: one compile for all c)."""
    data, c = data_and_shift
    return _mlp_loss(data, p) + 0.5 * c * sum(jnp.sum(x**2) for x in jax.tree_util.tree_leaves(p))


@pytest.fixture(scope="module")
def net():
    """A 3-8-2 tanh MLP (d = 50) on 32 random examples, at random parameters: an
    indefinite Hessian (eigenvalues in about [−0.57, 2.48]) formed densely by jax.hessian."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        data = (jnp.asarray(rng.normal(size=(32, 3))), jnp.asarray(np.sin(rng.normal(size=(32, 2)))))
        params = {
            "w1": jnp.asarray(rng.normal(size=(3, 8)) / np.sqrt(3)),
            "b1": jnp.zeros(8),
            "w2": jnp.asarray(rng.normal(size=(8, 2)) / np.sqrt(8)),
            "b2": jnp.zeros(2),
        }
        shifted = lambda c: Partial(_shifted_mlp_loss, (data, jnp.asarray(c, jnp.float64)))
        fun = shifted(0.0)  # the plain loss, as the same Partial type: one compile per method
        flat, unravel = ravel_pytree(params)
        hessian = np.asarray(jax.jit(jax.hessian(lambda v: fun(unravel(v))))(flat))
    lam = np.linalg.eigvalsh(hessian)[::-1]
    return {"fun": fun, "shifted": shifted, "params": params, "hessian": hessian, "lam": lam, "d": flat.size}


# ----------------------------------------------------------------------------- HVP, dense
def test_hvp_and_dense_hessian_match_jax_hessian(net, x64):
    h = net["hessian"]
    assert np.max(np.abs(h - h.T)) <= ROUND * np.max(np.abs(h))
    np.testing.assert_allclose(np.asarray(cv.dense_hessian(net["fun"], net["params"])), h, rtol=0, atol=ROUND)
    rng = np.random.default_rng(3)
    flat, unravel = ravel_pytree(net["params"])
    v = rng.normal(size=flat.size)
    hv = ravel_pytree(jax.jit(cv.hvp)(net["fun"], net["params"], unravel(jnp.asarray(v))))[0]
    np.testing.assert_allclose(np.asarray(hv), h @ v, rtol=0, atol=ROUND * np.abs(h).sum(1).max())


# ----------------------------------------------------------------------------- eigenvalues
def test_power_iteration_top_eigenvalues_spd(spd, x64):
    # Deflated power iteration, n = 100 HVPs per eigenvalue. A-priori error of eigenvalue i:
    # λ_i (λ_{i+1}/λ_i)^(2n) tan²θ₀ with ratios 14/20, 10/14 ≤ 0.72 and λ₄/λ₃ ≤ 0.4:
    # ≤ 20·0.72^200·tan²θ₀ ≈ 5e-28·tan²θ₀, negligible unless the start is orthogonal to the
    # eigenvector; rounding dominates.
    top3 = cv.top_eigenvalues(spd["fun"], spd["x"], key=jax.random.key(10), k=3, method="power", num_iterations=100)
    np.testing.assert_allclose(np.asarray(top3), TOP, rtol=ROUND)


def test_lanczos_top_eigenvalues_with_a_posteriori_bounds(spd, x64):
    key = jax.random.key(11)
    m = M  # < d = 40
    result = cv.lanczos(spd["fun"], spd["x"], key=key, num_iterations=m)
    basis = np.asarray(result.basis)
    assert basis.shape == (m, D)
    np.testing.assert_allclose(basis @ basis.T, np.eye(m), atol=1e-12)  # full reorthogonalisation
    np.testing.assert_allclose(basis @ spd["a"] @ basis.T, np.asarray(result.tridiagonal()), atol=ROUND * TOP[0])
    values, weights, bounds = (np.asarray(x) for x in result.ritz())
    assert np.all(np.diff(values) <= 0) and abs(weights.sum() - 1) < 1e-12
    # a-posteriori bound: an eigenvalue of A lies within bounds[i] of values[i]
    for value, bound in zip(values, bounds):
        assert np.min(np.abs(spd["lam"] - value)) <= bound + ROUND * TOP[0]
    # the top three are converged: separated by ≥ 4 from the bulk, so 20 steps make their bounds tiny
    assert np.all(bounds[:3] < 1e-8)
    assert np.all(np.abs(values[:3] - TOP) <= bounds[:3] + ROUND * TOP[0])
    top = cv.top_eigenvalues(spd["fun"], spd["x"], key=key, k=3, num_iterations=m)
    # the same Lanczos (key, m) in another program: the tridiagonal's eigenvalues to rounding,
    # ROUND·‖A‖ (a relative 1e-14 on λ ≈ 10-20 was only ~45 eps of slack)
    np.testing.assert_allclose(np.asarray(top), values[:3], rtol=0, atol=ROUND * TOP[0])


def test_lanczos_restarts_when_the_krylov_space_is_exhausted(x64):
    # rank-5 PSD matrix: a start vector's Krylov space has dimension ≤ 6, so the
    # residual vanishes (to rounding) before m = 20 steps; the iteration restarts with
    # a fresh orthogonal vector (β set to 0), T stays exact and block diagonal (the
    # restarts after the first lie in the null space: 1 × 1 blocks of 0).
    rng = np.random.default_rng(4)
    q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    lam = np.zeros(D)
    lam[:5] = [9.0, 7.0, 5.0, 3.0, 1.0]
    a = (q * lam) @ q.T
    fun = Partial(_quadratic, jnp.asarray(a))
    result = cv.lanczos(fun, jnp.zeros(D), key=jax.random.key(5), num_iterations=M)
    assert np.sum(np.asarray(result.beta) == 0) >= 1
    assert float(result.dropped) < 100 * np.finfo(np.float64).eps * 9 * 10
    basis = np.asarray(result.basis)
    np.testing.assert_allclose(basis @ basis.T, np.eye(M), atol=1e-12)
    np.testing.assert_allclose(basis @ a @ basis.T, np.asarray(result.tridiagonal()), atol=1e-12)
    values, _, _ = result.ritz()
    np.testing.assert_allclose(np.asarray(values)[:5], lam[:5], atol=1e-10)
    assert np.all(np.abs(np.asarray(values)[5:]) < 1e-10)


def test_power_resolves_a_repeated_eigenvalue(x64):
    # single-vector Lanczos cannot see multiplicities (documented); deflated power can
    a, _ = _spd(6, top=np.array([12.0, 12.0, 6.0]))
    fun = Partial(_quadratic, jnp.asarray(a))
    top = cv.top_eigenvalues(fun, jnp.zeros(D), key=jax.random.key(7), k=3, method="power", num_iterations=100)
    # the (12, 12) pair acts as one dominant eigenvalue; 6/12 = 0.5 ⇒ error 0.5^200
    np.testing.assert_allclose(np.asarray(top), [12.0, 12.0, 6.0], rtol=ROUND)


def test_eigenvalues_of_a_network_hessian(net, x64):
    lam = net["lam"]
    key = jax.random.key(12)
    values, _, bounds = (np.asarray(x) for x in cv.lanczos(net["fun"], net["params"], key=key, num_iterations=M).ritz())
    for i in range(3):  # largest algebraic eigenvalues, within the a-posteriori bound
        assert abs(values[i] - lam[i]) <= bounds[i] + ROUND
    assert np.all(bounds[:3] < 1e-4)  # converged (the third is the slowest: gap 0.18 to λ₄)
    # power finds the dominant |λ|; here it is λ₁ = 2.48 (λ_min ≈ −0.57) and |λ₂|/|λ₁| = 0.73:
    # a-priori error λ₁·0.73^200·tan²θ₀ ≈ 1e-27·tan²θ₀, so rounding only
    result = cv.power_iteration(net["fun"], net["params"], key=key, num_iterations=100)
    assert abs(float(result.eigenvalue) - lam[0]) <= 1e-9 * lam[0]
    u = ravel_pytree(result.eigenvector)[0]
    assert abs(float(jnp.linalg.norm(u)) - 1) < ROUND
    # eigenvector error ~ (|λ₂|/|λ₁|)^n = 0.73^100 ≈ 2e-14 (× tan θ₀)
    np.testing.assert_allclose(net["hessian"] @ np.asarray(u), lam[0] * np.asarray(u), atol=1e-9)


# ----------------------------------------------------------------------------- block Lanczos
CLUSTER = np.array([10.0, 9.99, 9.98, 7.0, 7.0])  # a tight cluster, then a double eigenvalue


@pytest.fixture(scope="module")
def clustered():
    """d = 60, spectrum: CLUSTER, then 55 eigenvalues uniform in [−3, 2] (negative ones included)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(20)
        d = 60
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        lam = np.concatenate([CLUSTER, rng.uniform(-3.0, 2.0, d - CLUSTER.size)])
        a = (q * lam) @ q.T
        fun = Partial(_quadratic, jnp.asarray(a))
        x = jnp.zeros(d)
    return {"a": a, "lam": np.sort(lam)[::-1], "fun": fun, "x": x}


def test_block_lanczos_clustered_multiple_and_negative_eigenvalues(clustered, x64):
    a, lam, fun, x = clustered["a"], clustered["lam"], clustered["fun"], clustered["x"]
    norm = np.max(np.abs(lam))
    key = jax.random.key(21)
    result = cv.block_lanczos(fun, x, key=key, block_size=4, num_iterations=36)  # 9 steps of 4
    basis = np.asarray(result.basis)
    assert basis.shape == (36, a.shape[0])
    np.testing.assert_allclose(basis @ basis.T, np.eye(36), atol=1e-12)  # full reorthogonalisation
    # the recurrence reproduces the projection VᵀAV exactly, to rounding of d-term sums of O(‖A‖)
    np.testing.assert_allclose(basis @ a @ basis.T, np.asarray(result.tridiagonal()), atol=ROUND * norm)
    values, weights, bounds = (np.asarray(x) for x in result.ritz())
    assert weights.shape == (4, 36)
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-12)  # the start block lies in the basis
    # Ritz residual ‖A y − θ y‖ = bounds (the true residual, recomputed), and by Weyl /
    # Bauer–Fike for symmetric A some eigenvalue lies within it: |θ − λ| ≤ ‖r‖
    _, vectors = np.linalg.eigh(np.asarray(result.tridiagonal()))
    ritz_vectors = basis.T @ vectors[:, ::-1]
    residuals = np.linalg.norm(a @ ritz_vectors - ritz_vectors * values, axis=0)
    np.testing.assert_allclose(residuals, bounds, atol=1e-9 * norm)  # bound = computed β-block formula
    for value, bound in zip(values, bounds):
        assert np.min(np.abs(lam - value)) <= bound + ROUND * norm
    # Cauchy interlacing: θ_i ≤ λ_i; with bounds < 0.005 (half the cluster's spacing 0.01) the
    # eigenvalue within bounds[i] of θ_i is λ_i itself, so |θ_i − λ_i| ≤ bounds[i] for the top 5 —
    # the double eigenvalue 7 appears twice (block size 4 ≥ multiplicity 2)
    assert np.all(values[:5] <= lam[:5] + ROUND * norm)
    assert np.all(bounds[:5] < 5e-3)
    assert np.all(np.abs(values[:5] - lam[:5]) <= bounds[:5] + ROUND * norm)
    # the smallest (most negative) eigenvalue converges too (extreme eigenvalues at both ends)
    assert abs(values[-1] - lam[-1]) <= bounds[-1] + ROUND * norm
    # top_eigenvalues(method="block") runs the same compiled programs: bit for bit
    top = cv.top_eigenvalues(fun, x, key=key, k=5, method="block", block_size=4, num_iterations=36)
    np.testing.assert_array_equal(np.asarray(top), values[:5])


def test_block_lanczos_restarts_on_a_low_rank_matrix(x64):
    # rank 5, blocks of 3: the Krylov space of the start block has dimension ≤ 8 < 18, so a
    # block becomes rank deficient; its singular values ≤ 100·eps·‖A‖ are set to 0 (``dropped``),
    # fresh orthogonal vectors replace them and T stays exact
    rng = np.random.default_rng(22)
    q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    lam = np.zeros(D)
    lam[:5] = [9.0, 7.0, 5.0, 3.0, 1.0]
    a = (q * lam) @ q.T
    result = cv.block_lanczos(Partial(_quadratic, jnp.asarray(a)), jnp.zeros(D), key=jax.random.key(23), block_size=3, num_iterations=18)
    assert float(result.dropped) <= 100 * np.finfo(np.float64).eps * 9
    basis = np.asarray(result.basis)
    np.testing.assert_allclose(basis @ basis.T, np.eye(18), atol=1e-12)
    np.testing.assert_allclose(basis @ a @ basis.T, np.asarray(result.tridiagonal()), atol=1e-12)
    values, _, _ = result.ritz()
    np.testing.assert_allclose(np.asarray(values)[:5], lam[:5], atol=1e-10)
    assert np.all(np.abs(np.asarray(values)[5:]) < 1e-10)


def test_block_methods_under_jit_and_vmap(net, x64):
    fun, params = net["fun"], net["params"]
    other = jax.tree_util.tree_map(lambda p: 0.8 * p + 0.05, params)
    stacked = jax.tree_util.tree_map(lambda a, b: jnp.stack([a, b]), params, other)
    key = jax.random.key(24)

    def one(p):
        eig = cv.top_eigenvalues(fun, p, key=key, k=3, method="block", block_size=3, num_iterations=48)
        return eig, cv.hutchinson_trace(fun, p, key=key, num_samples=12, batch_size=5).samples

    eig_vmap, tr_vmap = jax.jit(jax.vmap(one))(stacked)
    flat_fn = lambda p: (lambda v: fun(ravel_pytree(p)[1](v)))
    for i, p in enumerate((params, other)):
        flat = ravel_pytree(p)[0]
        h = np.asarray(jax.jit(jax.hessian(flat_fn(p)))(flat))
        lam = np.linalg.eigvalsh(h)[::-1]
        _, _, bounds = cv.block_lanczos(fun, p, key=key, block_size=3, num_iterations=48).ritz()
        # each program's Ritz values lie within the a-posteriori bound (converged: < 1e-4) of λ_i;
        # the programs differ by rounding only, ≪ the bound's rounding allowance ROUND
        assert np.all(np.asarray(bounds)[:3] < 1e-4)
        np.testing.assert_allclose(np.asarray(eig_vmap[i]), lam[:3], rtol=0, atol=float(np.max(bounds[:3])) + ROUND)
        # the same probes in two programs: zᵀHz = Σ_ij z_i H_ij z_j to rounding of sums of
        # |H_ij| terms (d² products, d-term sums per layer)
        eager = np.asarray(cv.hutchinson_trace(fun, p, key=key, num_samples=12).samples)
        atol = rounding_atol(np.abs(h).sum(), 4 * h.shape[0])
        np.testing.assert_allclose(np.asarray(tr_vmap[i]), eager, rtol=0, atol=atol)


# ----------------------------------------------------------------------------- trace
def _rademacher_sd(h):
    """Standard deviation of zᵀHz for Rademacher z: Var = 2 Σ_{i≠j} H_ij²."""
    off = h - np.diag(np.diag(h))
    return np.sqrt(2 * np.sum(off**2))


@pytest.mark.parametrize("which", ["spd", "net"])
def test_hutchinson_trace_z_test(which, spd, net, x64):
    if which == "spd":
        fun, params, h = spd["fun"], spd["x"], spd["a"]
    else:
        fun, params, h = net["fun"], net["params"], net["hessian"]
    n = 400
    est = cv.hutchinson_trace(fun, params, key=jax.random.key(13), num_samples=n)
    exact_se = _rademacher_sd(h) / np.sqrt(n)
    assert abs(float(est.mean) - np.trace(h)) <= Z * exact_se
    # the reported standard error estimates exact_se: the sample s.d. of n draws has relative
    # s.d. ≈ sqrt((κ − 1)/(4n)), κ the kurtosis of zᵀHz (estimated from the draws); 4σ of that
    samples = np.asarray(est.samples)
    kurtosis = np.mean((samples - samples.mean()) ** 4) / np.var(samples) ** 2
    assert abs(float(est.stderr) / exact_se - 1) <= Z * np.sqrt((kurtosis - 1) / (4 * n))


def test_hutchinson_exact_expectation_and_batched_probes(x64):
    # d = 6: average zᵀAz over all 2⁶ sign vectors = Σ_ij A_ij E[z_i z_j] = tr A exactly (the
    # estimator is unbiased); forward-over-forward zᵀAz agrees with the dense quadratic form to
    # the rounding of its 36-term sum of |A_ij| terms
    rng = np.random.default_rng(25)
    b = rng.normal(size=(6, 6))
    a = b + b.T
    fun = Partial(_quadratic, jnp.asarray(a))
    x = jnp.asarray(rng.normal(size=6))
    signs = np.array([[1.0 if (i >> j) & 1 else -1.0 for j in range(6)] for i in range(64)])
    forms = np.asarray(jax.vmap(lambda z: cv_trace._quadratic_form(lambda v: fun(v), x, z))(jnp.asarray(signs)))
    atol = rounding_atol(np.abs(a).sum(), 36 + 8)
    np.testing.assert_allclose(forms, np.einsum("ni,ij,nj->n", signs, a, signs), rtol=0, atol=atol)
    assert abs(forms.mean() - np.trace(a)) <= atol
    # the drawn probes are sign vectors: every sample is one of the 64 values (z and −z share one)
    n = 20
    seq = np.asarray(cv.hutchinson_trace(fun, x, key=jax.random.key(26), num_samples=n).samples)
    assert all(np.min(np.abs(forms - v)) <= atol for v in seq)
    # the same probes, 7 at a time under vmap (another program): equal to rounding
    batched = cv.hutchinson_trace(fun, x, key=jax.random.key(26), num_samples=n, batch_size=7)
    np.testing.assert_allclose(np.asarray(batched.samples), seq, rtol=0, atol=atol)


def test_repeated_calls_do_not_trace_the_loss_again():
    """The argument check (an abstract evaluation of fun) is cached by the shapes of fun and
    params, and the probe programs by JAX: a second hutchinson_trace with the same loss and
    shapes traces the loss no more; other shapes are traced (and checked) anew."""
    traces = []

    def loss(p):
        traces.append(None)  # runs only while JAX traces the function
        return jnp.sum(jnp.tanh(p["w"]) ** 2)

    params = {"w": jnp.linspace(-1.0, 1.0, 20)}
    cv.hutchinson_trace(loss, params, key=jax.random.key(0), num_samples=4)
    first = len(traces)
    cv.hutchinson_trace(loss, {"w": -params["w"]}, key=jax.random.key(1), num_samples=4)
    assert len(traces) == first
    cv.hutchinson_trace(loss, {"w": jnp.linspace(-1.0, 1.0, 21)}, key=jax.random.key(1), num_samples=4)
    assert len(traces) > first
    with pytest.raises(ValueError, match="scalar"):  # a cached success does not hide a new failure
        cv.hutchinson_trace(lambda p: p["w"] * 1.0, params, key=jax.random.key(0), num_samples=4)


def test_hutchinson_host_loop_equals_the_compiled_loop(net, x64):
    """Called with concrete arguments and no batch_size, hutchinson_trace runs its probes in a
    Python loop over one compiled probe (a shorter first compile); under jax.jit it runs them
    in one compiled lax.map. The probes (the same split keys, Rademacher z = −sign of the
    earlier normal draw: zᵀHz is even in z) give the same values to the rounding of a
    quadratic form (two programs, fused differently); the mean and standard error, formed
    in NumPy, agree to the rounding of a 40-term sum."""
    fun, params, key = net["fun"], net["params"], jax.random.key(27)
    n = 40
    host = cv.hutchinson_trace(fun, params, key=key, num_samples=n)
    compiled = jax.jit(lambda p: cv.hutchinson_trace(fun, p, key=key, num_samples=n))(params)
    # each zᵀHz sums the d² terms z_i H_ij z_j (|z| = 1) in some order: two orders differ by
    # at most the rounding of that sum of |H_ij|
    form_atol = rounding_atol(np.abs(net["hessian"]).sum(), 4 * net["d"])
    np.testing.assert_allclose(np.asarray(host.samples), np.asarray(compiled.samples), rtol=0, atol=form_atol)
    # a second call runs the same two programs again: the same bits
    again = cv.hutchinson_trace(fun, params, key=key, num_samples=n)
    np.testing.assert_array_equal(np.asarray(again.samples), np.asarray(host.samples))
    # two summation orders of n terms differ by ≤ (n − 1)ε Σ|x_i|, so the means by ≤ nε·max|x_i|;
    # the standard error (≤ max|x_i|) inherits the same order through the mean and the squares
    # (plus the samples' own difference, ≤ form_atol each)
    scale = float(np.abs(np.asarray(host.samples)).max())
    assert abs(float(host.mean) - float(compiled.mean)) <= n * np.finfo(np.float64).eps * scale + form_atol
    assert abs(float(host.stderr) - float(compiled.stderr)) <= n * np.finfo(np.float64).eps * scale + form_atol
    assert host.samples.dtype == compiled.samples.dtype and host.mean.dtype == compiled.mean.dtype
    # the probes are the signs of the normal draws of the split keys (z and −z give one value)
    flat, unravel = ravel_pytree(params)
    keys = jax.random.split(cv_trace._prepare(fun, params, key)[2], n)
    signs = jnp.where(jax.vmap(lambda k: jax.random.normal(k, flat.shape, flat.dtype))(keys) >= 0, 1.0, -1.0)
    forms = jax.vmap(lambda z: cv_trace._quadratic_form(lambda v: fun(unravel(v)), flat, z))(signs)
    np.testing.assert_allclose(np.asarray(host.samples), np.asarray(forms), rtol=0,
                               atol=rounding_atol(np.abs(net["hessian"]).sum(), 4 * net["d"]))


def _decaying(seed: int, d: int = D, rate: float = 0.8):
    """A dense symmetric positive definite matrix with eigenvalues 10·rate^i, i = 0 … d − 1
    (full rank, most of ‖A‖_F² in the first few), in a random orthonormal basis."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return (q * (10.0 * rate ** np.arange(d))) @ q.T


def _hutchpp_errors(fun, x, exact, seeds, **kwargs):
    """(estimate − exact, reported se) over independent keys."""
    runs = [cv.hutchpp_trace(fun, x, key=jax.random.key(s), **kwargs) for s in seeds]
    return np.array([float(r.mean) - exact for r in runs]), np.array([float(r.stderr) for r in runs])


def test_hutchpp_z_test_and_calibrated_stderr(x64):
    # A = _decaying: s = 6 sketch vectors, r = 28 residual probes (m = 40 products)
    a = _decaying(40)
    fun, x = Partial(_quadratic, jnp.asarray(a)), jnp.zeros(D)
    est = cv.hutchpp_trace(fun, x, key=jax.random.key(41), num_products=40, sketch_size=6)
    assert est.samples.shape == (28,)
    np.testing.assert_allclose(float(est.mean), float(est.deflated) + float(np.mean(est.samples)), rtol=1e-14)
    # one fixed seed: within Z = 4 reported standard errors (a t-statistic with 27 degrees of
    # freedom: P(|t| > 4) ≈ 4e-4)
    assert abs(float(est.mean) - np.trace(a)) <= Z * float(est.stderr)
    # calibration over 200 seeds: given Q, E[(est − tr A)²] = σ²(Q)/r = E[se²] (the residual
    # mean is unbiased for tr(PAP) = tr A − tr(QᵀAQ) and se² is the ddof-1 sample variance / r),
    # so D = err² − se² has mean 0 over seeds; z-test of its mean at Z standard errors
    err, se = _hutchpp_errors(fun, x, np.trace(a), range(1000, 1200), num_products=40, sketch_size=6)
    diff = err**2 - se**2
    assert abs(diff.mean()) <= Z * diff.std(ddof=1) / np.sqrt(diff.size)
    # the same statement as a ratio: the empirical RMS error over the RMS reported se is 1
    # within Z times the relative sampling error of an RMS (½ · sd(D)/(√n · mean se²))
    ratio = np.sqrt(np.mean(err**2) / np.mean(se**2))
    assert abs(ratio - 1) <= Z * 0.5 * diff.std(ddof=1) / (np.sqrt(diff.size) * np.mean(se**2))


def test_hutchpp_exact_when_rank_at_most_sketch_size(x64):
    # rank 5 ≤ s = 6: Y = AΩ spans range(A), so (I − QQᵀ)A(I − QQᵀ) = 0 and tr(QᵀAQ) = tr A;
    # both to rounding, ROUND·‖A‖ per sketch vector (ROUND covers the O(d)-term sums, with
    # margin for the conditioning of the sketch's basis)
    rng = np.random.default_rng(42)
    q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    lam = np.zeros(D)
    lam[:5] = [9.0, 7.0, 5.0, -3.0, 1.0]  # indefinite as well
    a = (q * lam) @ q.T
    fun = Partial(_quadratic, jnp.asarray(a))
    est = cv.hutchpp_trace(fun, jnp.ones(D), key=jax.random.key(43), num_products=16, sketch_size=6)
    tol = ROUND * 9.0 * 6
    assert abs(float(est.mean) - lam.sum()) <= tol
    assert abs(float(est.deflated) - lam.sum()) <= tol
    assert np.max(np.abs(np.asarray(est.samples))) <= tol and float(est.stderr) <= tol


def test_hutchpp_host_loop_equals_the_compiled_program(net, x64):
    """Called with concrete arguments, hutchpp_trace runs a Python loop over small compiled
    programs (basis, residual probe, quadratic form); under jax.jit it is one program. The
    same keys and probes: the deflated trace and every residual sample agree to the rounding
    of a d²-term quadratic form (two programs, fused differently), and a repeated call gives
    the same bits."""
    fun, params, key = net["fun"], net["params"], jax.random.key(45)
    host = cv.hutchpp_trace(fun, params, key=key, num_products=16, sketch_size=4)
    compiled = jax.jit(lambda p: cv.hutchpp_trace(fun, p, key=key, num_products=16, sketch_size=4))(params)
    assert host.samples.shape == compiled.samples.shape == (8,)
    # each vᵀHv sums d² terms v_i H_ij v_j with |v_i| ≤ 1 (rows of Q are unit vectors; w = (I − QQᵀ)z
    # has entries ≤ 1 + Σ_k |Q_ki||q_k·z| ≤ 1 + s·√d, as |Q_ki| ≤ 1 and ‖z‖ = √d): the rounding of that sum, and
    # of the QR and projections that form v, relative to Σ|H_ij| times the entries' size squared
    entry = 1 + 4 * np.sqrt(net["d"])
    atol = rounding_atol(np.abs(net["hessian"]).sum() * entry**2, 4 * net["d"])
    np.testing.assert_allclose(np.asarray(host.samples), np.asarray(compiled.samples), rtol=0, atol=atol)
    assert abs(float(host.deflated) - float(compiled.deflated)) <= 4 * atol
    assert abs(float(host.mean) - float(compiled.mean)) <= 5 * atol
    again = cv.hutchpp_trace(fun, params, key=key, num_products=16, sketch_size=4)
    np.testing.assert_array_equal(np.asarray(again.samples), np.asarray(host.samples))
    assert float(again.deflated) == float(host.deflated)


def test_hutchpp_beats_hutchinson_at_equal_products(spd, x64):
    # A full-rank Hessian (spd: eigenvalues 20, 14, 10 above a bulk in [0.5, 4]), m = 30
    # products each. Hutchinson's mean squared error is exactly Var(zᵀAz)/m = 2 Σ_{i≠j} A_ij²/m;
    # Hutch++'s (s = 10, r = 10) is estimated over 200 seeds (measured 14.1 ± 1.3 against
    # Hutchinson's 33.8: deflating the three outliers removes most, not all, of the off-diagonal
    # mass; the bulk's remains). Its upper 4-standard-error limit must be below Hutchinson's.
    a, m = spd["a"], 30
    mse_hutchinson = _rademacher_sd(a) ** 2 / m
    err, _ = _hutchpp_errors(spd["fun"], spd["x"], np.trace(a), range(2000, 2200), num_products=m)
    mse, mse_se = np.mean(err**2), np.std(err**2, ddof=1) / np.sqrt(err.size)
    assert mse + Z * mse_se < mse_hutchinson
    # and Hutchinson's own run at m probes has the exact variance it should (z-test of its se)
    est = cv.hutchinson_trace(spd["fun"], spd["x"], key=jax.random.key(44), num_samples=m)
    assert abs(float(est.mean) - np.trace(a)) <= Z * np.sqrt(mse_hutchinson)


def test_spectral_density_batched_probes_match_sequential(spd, x64):
    # the same probes (fold_in(key, l)), Lanczos vmapped 3 at a time vs one at a time: the
    # quadrature of the moments p ≤ 3 equals uᵀA^p u per probe (exact for p ≤ 2m − 1), so both
    # agree with each other to rounding, ROUND relative to ‖A‖^p
    key = jax.random.key(27)
    seq = cv.spectral_density(spd["fun"], spd["x"], key=key, num_probes=7, num_steps=10)
    bat = cv.spectral_density(spd["fun"], spd["x"], key=key, num_probes=7, num_steps=10, batch_size=3)
    assert bat.nodes.shape == seq.nodes.shape == (7, 10)
    for p in (1, 2, 3):
        per_seq = np.sum(np.asarray(seq.weights) * np.asarray(seq.nodes) ** p, axis=1)
        per_bat = np.sum(np.asarray(bat.weights) * np.asarray(bat.nodes) ** p, axis=1)
        np.testing.assert_allclose(per_bat, per_seq, rtol=0, atol=ROUND * TOP[0] ** p)


# ----------------------------------------------------------------------------- SLQ
def test_lanczos_quadrature_exact_for_polynomials(spd, x64):
    # Gauss quadrature with m nodes integrates polynomials of degree ≤ 2m − 1 exactly:
    # Σ_j τ_j² θ_j^p = uᵀA^p u for the unit start vector u, p ≤ 2m − 1 = 39
    m = M
    z = np.where(np.random.default_rng(8).random(D) < 0.5, -1.0, 1.0)
    u = z / np.sqrt(D)
    values, weights, _ = (np.asarray(x) for x in cv.lanczos(spd["fun"], spd["x"], key=jax.random.key(0), num_iterations=m, start=jnp.asarray(z)).ritz())
    scaled = spd["a"] / TOP[0]  # compare in units of λ₁ to keep powers O(1)
    for p in range(2 * m):
        exact = u @ np.linalg.matrix_power(scaled, p) @ u
        assert abs(np.sum(weights * (values / TOP[0]) ** p) - exact) <= 1e-10 * max(1.0, abs(exact))


def test_spectral_density_moments_and_log_determinant(spd, x64):
    num_probes, steps = 200, M
    key = jax.random.key(14)
    density = cv.spectral_density(spd["fun"], spd["x"], key=key, num_probes=num_probes, num_steps=steps)
    assert density.nodes.shape == (num_probes, steps) and density.dimension == D
    np.testing.assert_allclose(np.asarray(density.weights).sum(1), 1.0, atol=1e-12)
    lam = spd["lam"]
    for p in (1, 2, 3):  # exact per probe (p ≤ 2m − 1), so only the probe noise remains
        est = density.moment(p)
        assert abs(float(est.mean) - np.mean(lam**p)) <= Z * float(est.stderr), p
    # log det: log is not a polynomial, but with κ = 40 the Gauss-quadrature error after 20 steps
    # is ~ ((√κ − 1)/(√κ + 1))^(2m) ≈ 3e-6 relative, far below the probe standard error (~1e-2 here)
    logdet = cv.log_determinant(spd["fun"], spd["x"], key=key, num_probes=num_probes, num_steps=steps)
    assert float(logdet.min_ritz_value) > 0
    assert abs(float(logdet.mean) - np.sum(np.log(lam))) <= Z * float(logdet.stderr)
    assert 0 < float(logdet.stderr) < 0.05 * abs(np.sum(np.log(lam)))
    # the smoothed density integrates to 1 (Gaussians of width 0.2 on a grid of step 0.01 reaching
    # 5 widths beyond the nodes: trapezoid error ≪ 1e-6)
    grid = np.arange(-2.0, 23.0, 0.01)
    assert abs(np.trapezoid(np.asarray(density.density(grid, 0.2)), grid) - 1) < 1e-6


def test_log_determinant_against_slogdet_of_a_wishart_matrix(x64):
    """SLQ log det against ``jnp.linalg.slogdet`` of a dense SPD matrix whose spectrum is not
    built in: A = XᵀX/n + 0.1·I (d = 60, n = 120; eigenvalues ≈ [0.19, 3.0]). Two errors:
    the probes' Monte-Carlo error (P = 100 probes; z-test at Z = 4 standard errors) and the
    Gauss-quadrature error of log after m = 30 Lanczos steps, ≲ d·|log λ|_max·q with
    q = ((√κ − 1)/(√κ + 1))^(2m) (κ = λ_max/λ_min ≈ 16, so q ≈ 1e-13: negligible); the
    tolerance is their sum. The standard error must also be small: < 2 % of Σ|log λ_i| (the
    log det itself, a sum of terms of both signs, is near −9)."""
    rng = np.random.default_rng(21)
    d, n, m, probes = 60, 120, 30, 100
    x = rng.normal(size=(n, d))
    a = jnp.asarray(x.T @ x / n + 0.1 * np.eye(d))
    sign, exact = jnp.linalg.slogdet(a)
    assert float(sign) == 1.0
    lam = np.linalg.eigvalsh(np.asarray(a))
    kappa = lam[-1] / lam[0]
    q = ((np.sqrt(kappa) - 1) / (np.sqrt(kappa) + 1)) ** (2 * m)
    est = cv.log_determinant(Partial(_quadratic, a), jnp.zeros(d), key=jax.random.key(22), num_probes=probes,
                             num_steps=m)
    tol = Z * float(est.stderr) + d * np.max(np.abs(np.log(lam))) * q
    assert abs(float(est.mean) - float(exact)) <= tol, (float(est.mean), float(exact), tol)
    assert 0 < float(est.stderr) < 0.02 * np.sum(np.abs(np.log(lam)))


def test_slq_on_a_shifted_network(net, x64):
    # H + c I with c = |λ_min| + 0.5 is positive definite (spectrum in [0.5, 3.5]), κ ≈ 7:
    # the quadrature error of log after 20 steps ≈ ((√7 − 1)/(√7 + 1))^40 ≈ 1e-9, so only probe noise
    c = abs(net["lam"][-1]) + 0.5
    lam = net["lam"] + c
    key = jax.random.key(15)
    est = cv.log_determinant(net["shifted"](c), net["params"], key=key, num_probes=100, num_steps=M)
    assert abs(float(est.mean) - np.sum(np.log(lam))) <= Z * float(est.stderr)
    density = cv.spectral_density(net["shifted"](c), net["params"], key=key, num_probes=100, num_steps=M)
    for p in (1, 2, 3):
        moment = density.moment(p)
        assert abs(float(moment.mean) - np.mean(lam**p)) <= Z * float(moment.stderr)
    # c = 0: the network's own Hessian is indefinite (λ_min ≈ −0.57)
    with pytest.raises(ValueError, match="not positive definite"):
        cv.log_determinant(net["shifted"](0.0), net["params"], key=key, num_probes=100, num_steps=M)


# ----------------------------------------------------------------------------- Hessian norm
def test_hessian_norm_finite_difference_exact_on_a_quadratic(spd, x64):
    key = jax.random.key(17)
    n = 400
    exact = cv.hessian_frobenius_norm(spd["fun"], spd["x"], key=key, num_samples=n)
    # E‖Av‖² = ‖A‖_F², Var ‖Av‖² = 2‖A²‖_F² for v ~ N(0, I)
    frob2 = np.sum(spd["a"] ** 2)
    se = np.sqrt(2 * np.sum((spd["a"] @ spd["a"]) ** 2) / n)
    assert abs(float(exact.squared_norm) - frob2) <= Z * se
    assert abs(float(exact.norm) - np.sqrt(float(exact.squared_norm))) < 1e-12
    # a quadratic's gradient is linear: both difference schemes are exact up to rounding,
    # ~ eps·‖∇L‖/ε ≈ 1e-16·60/1e-3 ≈ 1e-11 relative per entry
    for scheme in ("forward", "central"):
        fd = cv.finite_difference_hessian_norm(spd["fun"], spd["x"], key=key, num_samples=n, epsilon=1e-3, scheme=scheme)
        np.testing.assert_allclose(np.asarray(fd.samples), np.asarray(exact.samples), rtol=1e-8)


def test_hessian_norm_finite_difference_order_on_a_network(net, x64):
    key = jax.random.key(18)
    n = 400
    exact = cv.hessian_frobenius_norm(net["fun"], net["params"], key=key, num_samples=n)
    frob2 = np.sum(net["hessian"] ** 2)
    se = np.sqrt(2 * np.sum((net["hessian"] @ net["hessian"]) ** 2) / n)
    assert abs(float(exact.squared_norm) - frob2) <= Z * se
    # same probes: the finite-difference estimate differs from the exact one by its bias only,
    # err(ε) = a ε^q + O(ε^(q+1)) with q = 1 (forward), 2 (central); halving ε divides it by 2^q.
    # The next term changes the ratio by O(ε·‖∇³L‖/‖∇²L‖) ≲ 1e-2 at ε = 1e-3 (rounding ≈ 1e-13
    # relative to an error ≥ 1e-7: negligible)
    base = float(exact.squared_norm)
    for scheme, order in (("forward", 1), ("central", 2)):
        errs = [
            float(cv.finite_difference_hessian_norm(net["fun"], net["params"], key=key, num_samples=n, epsilon=eps, scheme=scheme).squared_norm) - base
            for eps in (2e-3, 1e-3)
        ]
        assert abs(errs[0] / errs[1] / 2**order - 1) < 0.05, (scheme, errs)
        assert abs(errs[1]) < 1e-2 * base  # and the estimates agree: finite-difference ≈ exact norm


# ----------------------------------------------------------------------------- line
def test_loss_along_line_quadratic_closed_form(spd, x64):
    rng = np.random.default_rng(9)
    t1, t2 = rng.normal(size=D), rng.normal(size=D)
    alphas = np.linspace(-1, 2, 13)
    got = np.asarray(cv.loss_along_line(spd["fun"], jnp.asarray(t1), jnp.asarray(t2), alphas))
    a, delta = spd["a"], t2 - t1
    # L(θ₁ + αΔ) = L(θ₁) + α θ₁ᵀAΔ + ½ α² ΔᵀAΔ
    exact = 0.5 * t1 @ a @ t1 + alphas * (t1 @ a @ delta) + 0.5 * alphas**2 * (delta @ a @ delta)
    np.testing.assert_allclose(got, exact, rtol=ROUND, atol=ROUND * TOP[0])


# ----------------------------------------------------------------------------- bad input
def test_bad_input_raises_clear_errors(spd, x64):
    fun, x, key = spd["fun"], spd["x"], jax.random.key(0)
    with pytest.raises(ValueError, match="num_iterations"):
        cv.top_eigenvalues(fun, x, key=key, num_iterations=0)
    with pytest.raises(ValueError, match="k: must be at most"):
        cv.top_eigenvalues(fun, x, key=key, k=D + 1)
    with pytest.raises(ValueError, match="num_iterations: Lanczos needs"):
        cv.top_eigenvalues(fun, x, key=key, k=3, num_iterations=2)
    with pytest.raises(ValueError, match="method"):
        cv.top_eigenvalues(fun, x, key=key, method="arnoldi")
    with pytest.raises(ValueError, match="block_size"):
        cv.top_eigenvalues(fun, x, key=key, method="block", block_size=D + 1)
    with pytest.raises(ValueError, match="num_iterations: block Lanczos"):
        cv.top_eigenvalues(fun, x, key=key, k=4, method="block", block_size=3, num_iterations=5)
    with pytest.raises(ValueError, match="num_iterations: must be at least block_size"):
        cv.block_lanczos(fun, x, key=key, block_size=4, num_iterations=3)
    with pytest.raises(ValueError, match="num_samples"):
        cv.hutchinson_trace(fun, x, key=key, num_samples=1)
    with pytest.raises(ValueError, match="key"):
        cv.hutchinson_trace(fun, x, key=0)
    with pytest.raises(ValueError, match="fun: must return a floating-point scalar"):
        cv.hutchinson_trace(lambda p: p, x, key=key)
    with pytest.raises(TypeError, match="fun"):
        cv.hutchinson_trace("loss", x, key=key)
    with pytest.raises(ValueError, match="num_products"):
        cv.hutchpp_trace(fun, x, key=key, num_products=3)
    with pytest.raises(ValueError, match="sketch_size: leaves 1 residual probes"):
        cv.hutchpp_trace(fun, x, key=key, num_products=9, sketch_size=4)
    with pytest.raises(ValueError, match="sketch_size: must be at most"):
        cv.hutchpp_trace(fun, x, key=key, num_products=3 * D + 6, sketch_size=D + 1)
    with pytest.raises(ValueError, match="sketch_size: must be an integer"):
        cv.hutchpp_trace(fun, x, key=key, sketch_size=0)
    with pytest.raises(ValueError, match="params: parameters must be floating point"):
        cv.power_iteration(lambda p: jnp.sum(p**2), jnp.arange(3), key=key)
    with pytest.raises(ValueError, match="non-finite"):
        cv.power_iteration(fun, x.at[0].set(jnp.nan), key=key)
    with pytest.raises(ValueError, match="epsilon"):
        cv.finite_difference_hessian_norm(fun, x, key=key, epsilon=0.0)
    with pytest.raises(ValueError, match="scheme"):
        cv.finite_difference_hessian_norm(fun, x, key=key, scheme="backward")
    with pytest.raises(ValueError, match="tangent"):
        cv.hvp(fun, x, jnp.ones(D + 1))
    with pytest.raises(ValueError, match="params2"):
        cv.loss_along_line(fun, x, jnp.ones(D + 1), [0.0, 1.0])
    with pytest.raises(ValueError, match="alphas"):
        cv.loss_along_line(fun, x, x, [[0.0, 1.0]])
    with pytest.raises(ValueError, match="alphas"):
        cv.loss_along_line(fun, x, x, [0.0, np.inf])
    with pytest.raises(ValueError, match="start"):
        cv.lanczos(fun, x, key=key, start=jnp.zeros(D))
