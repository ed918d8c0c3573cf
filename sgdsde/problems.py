"""Ready-made problems with exact, documented facts.

Every generated data set is centred and whitened exactly (not just in expectation),
so the stated gradient-noise covariances hold to rounding at every θ:

- :func:`quadratic`: l_i = ½(θ−θ*)ᵀA(θ−θ*) + x_iᵀ(θ−θ*), (1/N)Σx_i = 0,
  (1/N)Σx_i x_iᵀ = C  ⇒  L = ½(θ−θ*)ᵀA(θ−θ*), g = A(θ−θ*), C(θ) = C exactly.
- isotropic landscapes: l_i = L(θ) + σ z_iᵀθ with (1/N)Σz_i = 0, (1/N)Σz_i z_iᵀ = I
  ⇒ C(θ) = σ² I exactly, so the Boltzmann law exp(−2L/(nσ²)) applies.
- :func:`linear_regression` and :func:`logistic_regression` on generated data.

The quadratic and isotropic problems also pass their closed-form L as ``full_loss``,
so ``loss``/``grad`` (the SDE drift) cost O(d), not O(N d).

Each problem carries its facts in ``problem.info``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .problem import Problem

__all__ = [
    "whitened_noise",
    "quadratic",
    "isotropic_landscape",
    "double_well_1d",
    "double_well_2d",
    "multi_well",
    "linear_regression",
    "logistic_regression",
]


def _seed(key) -> np.random.Generator:
    """A NumPy generator seeded from a JAX key (data generation happens in NumPy, float64)."""
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.random.default_rng(np.asarray(key, dtype=np.uint32).ravel().tolist())


def _check_num_examples(num_examples, dim: int) -> int:
    if isinstance(num_examples, bool) or not isinstance(num_examples, (int, np.integer)):
        raise ValueError(f"num_examples: must be an integer, got {num_examples!r}")
    if num_examples < dim + 1:
        raise ValueError(
            f"num_examples: must be ≥ dim + 1 = {dim + 1} to whiten {dim}-dimensional noise exactly, "
            f"got {num_examples}"
        )
    return int(num_examples)


def _psd_sqrt(cov: np.ndarray, name: str) -> np.ndarray:
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"{name}: must be a square matrix, got shape {cov.shape}")
    if not np.all(np.isfinite(cov)):
        raise ValueError(f"{name}: contains non-finite entries")
    if not np.allclose(cov, cov.T, rtol=1e-10, atol=1e-12 * max(np.abs(cov).max(), 1e-300)):
        raise ValueError(f"{name}: must be symmetric")
    w, v = np.linalg.eigh(cov)
    if w.min() < -1e-10 * max(abs(w).max(), 1e-300):
        raise ValueError(f"{name}: must be positive semi-definite, smallest eigenvalue {w.min():.3g}")
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def whitened_noise(num_examples: int, cov, *, key) -> np.ndarray:
    """N vectors x_i with (1/N)Σx_i = 0 and (1/N)Σx_i x_iᵀ = cov exactly (float64, (N, d))."""
    cov = np.atleast_2d(np.asarray(cov, dtype=np.float64))
    root = _psd_sqrt(cov, "noise_cov")
    d = cov.shape[0]
    n = _check_num_examples(num_examples, d)
    z = _seed(key).standard_normal((n, d))
    z -= z.mean(axis=0)
    second = z.T @ z / n
    w, v = np.linalg.eigh(second)
    z = z @ (v / np.sqrt(w)) @ v.T  # now zᵀz/N = I
    return z @ root


def quadratic(hessian, noise_cov, num_examples: int, *, key, minimum=None) -> Problem:
    """Quadratic (Ornstein–Uhlenbeck) problem: L = ½(θ−θ*)ᵀA(θ−θ*), C(θ) = noise_cov exactly.

    Params are a vector of length d. ``info``: hessian, noise_cov, minimum.
    """
    a = np.atleast_2d(np.asarray(hessian, dtype=np.float64))
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"hessian: must be a square matrix, got shape {a.shape}")
    if not np.allclose(a, a.T):
        raise ValueError("hessian: must be symmetric")
    c = np.atleast_2d(np.asarray(noise_cov, dtype=np.float64))
    if c.shape != a.shape:
        raise ValueError(f"noise_cov: shape {c.shape} does not match hessian shape {a.shape}")
    d = a.shape[0]
    theta_star = np.zeros(d) if minimum is None else np.asarray(minimum, dtype=np.float64).reshape(-1)
    if theta_star.shape != (d,):
        raise ValueError(f"minimum: must have shape ({d},), got {theta_star.shape}")
    x = whitened_noise(num_examples, c, key=key)
    hessian_j, minimum_j = jnp.asarray(a), jnp.asarray(theta_star)

    def per_example_loss(theta, x_i):
        u = theta - minimum_j.astype(theta.dtype)
        return 0.5 * u @ (hessian_j.astype(theta.dtype) @ u) + x_i.astype(theta.dtype) @ u

    def full_loss(theta):  # the x_i average to zero exactly
        u = theta - minimum_j.astype(theta.dtype)
        return 0.5 * u @ (hessian_j.astype(theta.dtype) @ u)

    info = {"hessian": a, "noise_cov": c, "minimum": theta_star}
    return Problem(per_example_loss, jnp.asarray(x), info=info, full_loss=full_loss)


def isotropic_landscape(loss, dim: int, sigma2: float, num_examples: int, *, key, info=None) -> Problem:
    """l_i(θ) = L(θ) + σ z_iᵀθ with exactly centred, whitened z_i: C(θ) = σ² I at every θ.

    ``loss(theta) -> scalar`` is L for a parameter vector of length ``dim``.
    """
    if not np.isfinite(sigma2) or sigma2 < 0:
        raise ValueError(f"sigma2: must be a finite number ≥ 0, got {sigma2!r}")
    x = whitened_noise(num_examples, float(sigma2) * np.eye(dim), key=key)

    def per_example_loss(theta, x_i):
        return loss(theta) + x_i.astype(theta.dtype) @ theta

    # the z_i average to zero exactly, so the data average of l_i is L itself
    info = {"sigma2": float(sigma2), "dim": dim, **(info or {})}
    return Problem(per_example_loss, jnp.asarray(x), info=info, full_loss=loss)


def _double_well_critical_points(barrier: float, width: float, tilt: float):
    """Critical points of b((θ/w)² − 1)² + tilt·θ, with L and L″ at each (sorted)."""
    b, w = barrier, width
    roots = np.roots([4 * b / w**4, 0.0, -4 * b / w**2, tilt])
    real = np.sort(roots[np.abs(roots.imag) < 1e-9].real)
    value = b * ((real / w) ** 2 - 1) ** 2 + tilt * real
    curvature = 4 * b / w**2 * (3 * real**2 / w**2 - 1)
    return real, value, curvature


def _check_positive(value, name: str) -> float:
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")
    return float(value)


def double_well_1d(
    barrier: float = 1.0, width: float = 1.0, tilt: float = 0.0, *, sigma2: float = 1.0,
    num_examples: int = 1000, key,
) -> Problem:
    """L(θ) = b((θ/w)² − 1)² + tilt·θ, θ a vector of length 1, noise σ² exactly.

    Untilted: minima θ = ±w with L = 0 and L″ = 8b/w², a maximum at 0 with L = b and
    L″ = −4b/w². ``info["critical_points"]``, ``info["values"]``, ``info["curvatures"]``
    list all critical points (roots of the cubic L′ = 0) for any tilt.
    """
    barrier, width = _check_positive(barrier, "barrier"), _check_positive(width, "width")
    points, values, curvatures = _double_well_critical_points(barrier, width, tilt)

    def loss(theta):
        u = theta[0]
        return barrier * ((u / width) ** 2 - 1) ** 2 + tilt * u

    info = {"critical_points": points, "values": values, "curvatures": curvatures, "loss": loss}
    return isotropic_landscape(loss, 1, sigma2, num_examples, key=key, info=info)


def double_well_2d(
    barrier: float = 1.0, width: float = 1.0, curvature: float = 1.0, tilt: float = 0.0, *,
    sigma2: float = 1.0, num_examples: int = 1000, key,
) -> Problem:
    """L(θ) = b((θ₁/w)² − 1)² + tilt·θ₁ + ½ k θ₂², noise σ² I exactly.

    Untilted: minima (±w, 0), L = 0, Hessian diag(8b/w², k); saddle (0, 0), L = b,
    Hessian diag(−4b/w², k). ``info`` lists ``minima`` and ``saddles`` with their
    losses and Hessians for any tilt.
    """
    barrier, width = _check_positive(barrier, "barrier"), _check_positive(width, "width")
    curvature = _check_positive(curvature, "curvature")
    points, values, curvatures = _double_well_critical_points(barrier, width, tilt)

    def loss(theta):
        u, v = theta[0], theta[1]
        return barrier * ((u / width) ** 2 - 1) ** 2 + tilt * u + 0.5 * curvature * v**2

    critical = [
        {"point": np.array([p, 0.0]), "loss": float(l), "hessian": np.diag([h, curvature])}
        for p, l, h in zip(points, values, curvatures)
    ]
    info = {
        "minima": [c for c in critical if c["hessian"][0, 0] > 0],
        "saddles": [c for c in critical if c["hessian"][0, 0] < 0],
        "loss": loss,
    }
    return isotropic_landscape(loss, 2, sigma2, num_examples, key=key, info=info)


def multi_well(
    centers, levels, hessians, *, softness: float = 0.05, sigma2: float = 1.0,
    num_examples: int = 1000, key,
) -> Problem:
    """Several quadratic wells joined by a smooth minimum, noise σ² I exactly:

        L(θ) = −s log Σ_k exp(−q_k(θ)/s),  q_k = L_k + ½(θ−μ_k)ᵀH_k(θ−μ_k).

    Near μ_k, L = q_k up to terms of order s·exp(−gap/s), so well k has minimum ≈ μ_k,
    loss ≈ L_k (its depth) and Hessian ≈ H_k (its sharpness) when the wells are
    separated (gaps ≫ s). ``info`` holds the nominal centers, levels and hessians, and
    ``classify(θ) = argmin_k q_k(θ)``, a basin label for observers and quadrature.
    """
    mu = np.atleast_2d(np.asarray(centers, dtype=np.float64))
    lv = np.asarray(levels, dtype=np.float64).reshape(-1)
    hs = np.asarray(hessians, dtype=np.float64)
    k, d = mu.shape
    if hs.ndim == 1:  # one scalar curvature per well
        hs = hs[:, None, None] * np.eye(d)
    if lv.shape != (k,) or hs.shape != (k, d, d):
        raise ValueError(
            f"levels/hessians: need {k} levels and {k} Hessians of shape ({d}, {d}) to match centers, "
            f"got {lv.shape} and {hs.shape}"
        )
    for i, h in enumerate(hs):
        if not np.allclose(h, h.T) or np.linalg.eigvalsh(h).min() <= 0:
            raise ValueError(f"hessians: Hessian {i} must be symmetric positive definite")
    softness = _check_positive(softness, "softness")
    mu_j, lv_j, hs_j = jnp.asarray(mu), jnp.asarray(lv), jnp.asarray(hs)

    def wells(theta):
        u = theta - mu_j.astype(theta.dtype)
        return lv_j.astype(theta.dtype) + 0.5 * jnp.einsum("ki,kij,kj->k", u, hs_j.astype(theta.dtype), u)

    def loss(theta):
        return -softness * jax.scipy.special.logsumexp(-wells(theta) / softness)

    def classify(theta):
        """The well whose quadratic q_k is lowest at θ (an int in [0, K)): the basin label
        every method of the minima experiment uses, so all of them count the same region."""
        return jnp.argmin(wells(theta)).astype(jnp.int32)

    info = {"centers": mu, "levels": lv, "hessians": hs, "softness": softness, "loss": loss,
            "classify": classify, "num_basins": k}
    return isotropic_landscape(loss, d, sigma2, num_examples, key=key, info=info)


def linear_regression(
    num_examples: int, dim: int, *, key, noise_std: float = 0.5, regularization: float = 0.0
) -> Problem:
    """l_i = ½(x_iᵀθ − y_i)², R = τ‖θ‖², x_i ~ N(0, I), y_i = x_iᵀw + ε_i, ε_i ~ N(0, noise_std²).

    Exact: Hessian A = XᵀX/N + 2τI (constant), minimiser θ* = A⁻¹ Xᵀy/N (``info``).
    """
    n = _check_num_examples(num_examples, dim)
    rng = _seed(key)
    x = rng.standard_normal((n, dim))
    w = rng.standard_normal(dim)
    y = x @ w + noise_std * rng.standard_normal(n)
    hessian = x.T @ x / n + 2 * regularization * np.eye(dim)
    minimum = np.linalg.solve(hessian, x.T @ y / n)

    def per_example_loss(theta, example):
        return 0.5 * (example["x"].astype(theta.dtype) @ theta - example["y"].astype(theta.dtype)) ** 2

    reg = (lambda theta: regularization * jnp.sum(theta**2)) if regularization else None
    info = {"hessian": hessian, "minimum": minimum, "true_weights": w}
    return Problem(per_example_loss, {"x": jnp.asarray(x), "y": jnp.asarray(y)}, reg, info=info)


def logistic_regression(
    num_examples: int, dim: int, *, key, scale: float = 2.0, regularization: float = 0.0
) -> Problem:
    """l_i = log(1 + exp(−y_i x_iᵀθ)), y_i ∈ {−1, +1} drawn from the logistic model with
    weights w of norm ``scale``; R = τ‖θ‖². ``info["true_weights"]`` = w."""
    n = _check_num_examples(num_examples, dim)
    rng = _seed(key)
    x = rng.standard_normal((n, dim))
    w = rng.standard_normal(dim)
    w *= scale / np.linalg.norm(w)
    y = np.where(rng.random(n) < 1 / (1 + np.exp(-x @ w)), 1.0, -1.0)

    def per_example_loss(theta, example):
        margin = example["y"].astype(theta.dtype) * (example["x"].astype(theta.dtype) @ theta)
        return jax.nn.softplus(-margin)

    reg = (lambda theta: regularization * jnp.sum(theta**2)) if regularization else None
    return Problem(per_example_loss, {"x": jnp.asarray(x), "y": jnp.asarray(y)}, reg, info={"true_weights": w})
