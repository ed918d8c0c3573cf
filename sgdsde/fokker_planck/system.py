"""The SGD system as a Fokker–Planck generator: the same problem, hyperparameters and
noise model that the runner and the SDE steppers use (docs/theory.md §2–3).

Overdamped, SGD-step time (``clock="steps"``; one unit of t is one SGD step):

    ∂P/∂t = ∇·[η ∇L P] + Σ_ij ∂_i∂_j (D_ij P),   U = η L,   D = η² f C / (2S),

f = (N − S)/(N − 1) for a noise model with ``finite_n=True`` (else 1). ``clock="sme"``
divides the generator by η (SME time t_sme = η·steps). Noise models:
``isotropic(σ²)`` → D = η² f σ²/(2S) (equilibrium exp(−L/T), T = n f σ²/2, n = η/S);
``diagonal`` → per-axis constants; ``full`` → a constant full matrix (cross-diffusion
stencil, see :mod:`.operator`); ``empirical()`` → the *diagonal* of the problem's C(θ),
state dependent (Itô form); ``from_function(b)`` → the diagonal of b(θ)b(θ)ᵀ. Off-diagonal
entries of a state-dependent C are not modelled (documented limitation).

Momentum (:func:`momentum_generator`), phase space (θ, v) for 1-D θ, friction μ = 1 − β:

    dθ = v dt,  dv = (−μ v − η L′(θ)) dt + (η/√S) √f σ dW,
    ∂P/∂t = −∂_θ(v P) + ∂_v[(μ v + η L′) P] + D_v ∂_v² P,   D_v = η² f σ²/(2S),

with stationary Maxwell–Boltzmann P ∝ exp(−(μ/D_v)(η L(θ) + v²/2)): the θ-marginal is
Boltzmann with noise n/(1 − β). The v-fluxes are Scharfetter–Gummel with the exact
potential μv²/2 + η L′(θ_i) v; the θ-transport v ∂_θ has no diffusion and is upwinded
(a Markov generator, hence positive; first order in h_θ, by Godunov's theorem the best
a linear monotone scheme can do).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .. import noise as noise_lib
from ..hyper import Hyper
from ..problem import Problem
from ._precision import float64_entry, is_traced
from .grid import Grid, _check_grid
from .langevin import (
    _check_finite,
    _check_full,
    _cross_pairs,
    _edge_points,
    _face_mask,
    _Samples,
    generator_from_samples,
    sample,
)
from .markov import Generator, _rates

__all__ = ["generator", "momentum_generator"]

CLOCKS = ("steps", "sme")


# ----------------------------------------------------------------------- validation
def _scalar(value, name: str):
    if callable(value):
        raise ValueError(f"hyper: {name} must be a scalar here, not a schedule (the generator is time independent)")
    if np.ndim(value) != 0:
        raise ValueError(f"hyper: {name} must be a scalar here, got shape {np.shape(value)} (vmap over a grid instead)")
    return value


def _hyper_values(hyper, momentum_allowed: bool):
    if not isinstance(hyper, Hyper):
        raise ValueError(f"hyper: must be an sgdsde.Hyper, got {type(hyper).__name__}")
    eta = _scalar(hyper.learning_rate, "learning_rate")
    s = _scalar(hyper.batch_size, "batch_size")
    beta = _scalar(hyper.momentum, "momentum")
    if not is_traced(eta) and not (np.isfinite(eta) and float(eta) > 0):
        raise ValueError(f"learning_rate: must be a finite number > 0, got {eta!r}")
    if not is_traced(s) and not (np.isfinite(s) and float(s) >= 1):
        raise ValueError(f"batch_size: must be ≥ 1, got {s!r}")
    if not is_traced(beta):
        if not momentum_allowed and float(beta) != 0.0:
            raise ValueError(
                f"momentum: fp.generator is the overdamped model and needs momentum = 0, got {float(beta):g}; "
                "use fp.momentum_generator on a (θ, v) grid"
            )
        if not 0.0 <= float(beta) < 1.0:
            raise ValueError(f"momentum: must lie in [0, 1), got {float(beta):g}")
    dtype = jnp.result_type(float)
    return jnp.asarray(eta, dtype), jnp.asarray(s, dtype), jnp.asarray(beta, dtype)


def _check_clock(clock) -> str:
    if clock not in CLOCKS:
        raise ValueError(f"clock: must be one of {CLOCKS}, got {clock!r}")
    return clock


def _loss_function(problem, loss, ndim: int) -> Callable:
    if loss is not None:
        if not callable(loss):
            raise ValueError("loss: must be a callable θ (ndim,) -> scalar")
        fn = loss
    elif problem is not None:
        if not isinstance(problem, Problem):
            raise ValueError(f"problem: must be an sgdsde.Problem, got {type(problem).__name__}")
        fn = problem.loss
    else:
        raise ValueError("problem/loss: give a problem or a loss callable")
    try:
        out = jax.eval_shape(fn, jax.ShapeDtypeStruct((ndim,), jnp.result_type(float)))
    except Exception as err:
        raise ValueError(
            f"loss: evaluating the loss at a parameter vector of length {ndim} (the grid's dimension) failed: "
            f"{type(err).__name__}: {err}"
        ) from err
    if getattr(out, "shape", None) != ():
        raise ValueError(f"loss: must return a scalar for a parameter vector of length {ndim}")
    return fn


def _noise_factor(noise, s, problem):
    """f = (N − S)/(N − 1) for finite_n noise (needs the problem's N), else 1."""
    if not noise.finite_n:
        return 1.0
    if problem is None:
        raise ValueError("noise: finite_n=True needs the problem (its number of examples N)")
    return noise.variance_factor(s, problem.num_examples)


@dataclasses.dataclass(frozen=True, eq=False)
class _CovarianceDiagonal:
    """θ ↦ diag C(θ) of a state-dependent noise model; hashable by (model kind, source),
    so that the sampled program is compiled once per problem / factor function."""

    source: object  # the Problem (empirical) or b (from_function)
    kind: str

    def __call__(self, theta):
        if self.kind == "empirical":
            return self.source.gradient_covariance(theta, "diagonal")
        b = self.source(theta)
        return jnp.sum(b * b, axis=-1)

    def __eq__(self, other):
        return isinstance(other, _CovarianceDiagonal) and other.source is self.source and other.kind == self.kind

    def __hash__(self):
        return hash((id(self.source), self.kind))


def _covariance(noise, problem, ndim: int):
    """('constant', C diag (ndim,)) | ('full', C) | ('callable', θ ↦ diag C(θ))."""
    if not noise_lib.is_noise_model(noise):
        raise ValueError(
            "noise: must be a noise model from sgdsde.noise (isotropic, diagonal, full, empirical, "
            f"from_function), got {type(noise).__name__}"
        )
    dtype = jnp.result_type(float)
    if isinstance(noise, noise_lib.Isotropic):
        return "constant", jnp.broadcast_to(jnp.asarray(noise.sigma2, dtype), (ndim,))
    if isinstance(noise, noise_lib.Diagonal):
        if np.shape(noise.variances) != (ndim,):
            raise ValueError(f"noise: diagonal variances have shape {np.shape(noise.variances)}, the grid has {ndim} axes")
        return "constant", jnp.asarray(noise.variances, dtype)
    if isinstance(noise, noise_lib.Full):
        if np.shape(noise.cov) != (ndim, ndim):
            raise ValueError(f"noise: the covariance has shape {np.shape(noise.cov)}, the grid has {ndim} axes")
        cov = noise.cov
        if not is_traced(cov) and np.all(np.asarray(cov) == np.diag(np.diag(np.asarray(cov)))):
            return "constant", jnp.asarray(np.diag(np.asarray(cov)), dtype)
        return "full", jnp.asarray(cov, dtype)
    if isinstance(noise, noise_lib.Empirical):
        if problem is None:
            raise ValueError("noise: empirical() needs the problem (its per-example gradients)")
        return "callable", _CovarianceDiagonal(problem, "empirical")
    if isinstance(noise, noise_lib.FromFunction):
        return "callable", _CovarianceDiagonal(noise.b, "from_function")
    raise ValueError(f"noise: unsupported noise model {noise!r}")


# ------------------------------------------------------------------------ overdamped
@float64_entry
def generator(
    grid: Grid,
    problem: Problem | None = None,
    *,
    hyper: Hyper,
    noise=None,
    loss: Callable | None = None,
    clock: str = "steps",
) -> Generator:
    """The Fokker–Planck generator of SGD's overdamped Langevin model on ``grid``.

    U = η L (L from ``loss`` or ``problem.loss``, a function of a parameter vector of
    length grid.ndim, evaluated at the cell centres), D = η² f C/(2S) from ``noise``
    (default ``noise.empirical()``, the problem's own C(θ), diagonal part). ``hyper`` is a
    scalar :class:`sgdsde.Hyper` with momentum 0 (use :func:`momentum_generator`).
    ``clock="steps"`` (rates per SGD step) or ``"sme"`` (per unit of t_sme = η·steps).
    Differentiable in η, S (a float) and the noise model's parameters (pass them as
    pytrees through ``jax.grad``).
    """
    g = _check_grid(grid)
    clock = _check_clock(clock)
    eta, s, _ = _hyper_values(hyper, momentum_allowed=False)
    loss_fn = _loss_function(problem, loss, g.ndim)
    if noise is None:
        if problem is None:
            raise ValueError("noise: give a noise model (the default, empirical(), needs a problem)")
        noise = noise_lib.empirical()
    kind, cov = _covariance(noise, problem, g.ndim)
    scale = eta**2 * _noise_factor(noise, s, problem) / (2.0 * s)
    u = eta * sample(loss_fn, g.points())
    if kind == "constant":
        samples = _Samples(u=u, d_const=scale * cov)
        if not is_traced(samples.d_const) and np.any(np.asarray(samples.d_const) <= 0):
            raise ValueError(
                "noise: the diffusion η² f C_aa/(2S) must be > 0 on every axis (zero noise, or f = 0 when S = N "
                "with finite_n=True, has no Fokker–Planck density)"
            )
        pairs = ()
    elif kind == "full":
        samples = _Samples(u=u, d_const=scale * cov)
        _check_full(g, samples.d_const)
        pairs = _cross_pairs(samples.d_const, g.ndim)
    else:
        d_cells = scale * sample(cov, g.points())
        d_faces = tuple(scale * sample(cov, _edge_points(g, a, 0.5))[..., a] for a in range(g.ndim))
        samples = _Samples(u=u, d_cells=d_cells, d_faces=d_faces)
        pairs = ()
    clock_scale = 1.0 / eta if clock == "sme" else jnp.ones((), eta.dtype)
    return generator_from_samples(g, kind, samples, pairs, clock_scale, clock)


# -------------------------------------------------------------------------- momentum
def _log_gibbs(loss_values, v, eta, beta_t):
    """log π = −β_t (η L(θ) + v²/2) on a (θ, v) mesh (unnormalised)."""
    return -beta_t * (eta * loss_values[:, None] + 0.5 * v[None, :] ** 2)


@functools.partial(jax.jit, static_argnames=("g", "clock"))
def _build_momentum(g: Grid, clock: str, loss_centres, loss_edges, eta, d_v, mu, clock_scale) -> Generator:
    """Friction: Scharfetter–Gummel along v with potential μv²/2 (detailed balance with
    exp(−μv²/(2D_v))). Hamiltonian transport: a divergence-free edge current from the
    stream function Ψ = −π/β_t at the cell corners (π the Gibbs density, β_t = μ/D_v;
    Ψ = 0 on zero-flux boundaries), J_θ(i+½, j) = Ψ(i+½, j+½) − Ψ(i+½, j−½),
    J_v(i, j+½) = Ψ(i−½, j+½) − Ψ(i+½, j+½), with Markov rates max(±J, 0)/m (m = π·volume
    at the centres). Any divergence-free current leaves m stationary, so the discrete
    stationary state is the Maxwell–Boltzmann law at the cell centres, exactly."""
    dtype = loss_centres.dtype
    h_theta, h_v = g.spacing
    beta_t = mu / d_v
    v_c = jnp.asarray(g.centers[1], dtype)
    v_e = jnp.asarray(g.edges[1], dtype)
    log_m = _log_gibbs(loss_centres, v_c, eta, beta_t)  # (nθ, nv)
    log_corner = _log_gibbs(loss_edges, v_e, eta, beta_t)  # (nθ+1, nv+1)
    open_corner = np.ones(log_corner.shape, bool)
    open_corner[:, 0] = open_corner[:, -1] = False  # v boundaries: zero flux
    if not g.periodic[0]:
        open_corner[0, :] = open_corner[-1, :] = False
    else:  # the corner column at θ = upper is the one at θ = lower
        log_corner = log_corner.at[-1].set(log_corner[0])
    scale = 1.0 / (beta_t * h_theta * h_v)

    def ratio(log_c, mask, log_ref):
        """π_corner / π_centre where the corner is open, else 0 (safe for gradients)."""
        return jnp.where(mask, jnp.exp(jnp.where(mask, log_c - log_ref, 0.0)), 0.0)

    n_theta, n_v = g.shape
    rows_hi = np.arange(1, n_theta + 1)  # corner θ-edge i+1 for the face (i+½)
    # θ faces (i+½, j): corners (i+1, j) and (i+1, j+1)
    lower_c = log_corner[rows_hi][:, :-1]
    upper_c = log_corner[rows_hi][:, 1:]
    lower_open = jnp.asarray(open_corner[rows_hi][:, :-1])
    upper_open = jnp.asarray(open_corner[rows_hi][:, 1:])
    log_next = jnp.roll(log_m, -1, axis=0)
    flux_theta_fwd = ratio(lower_c, lower_open, log_m) - ratio(upper_c, upper_open, log_m)  # J/m_ij
    flux_theta_bwd = ratio(lower_c, lower_open, log_next) - ratio(upper_c, upper_open, log_next)  # J/m_{i+1,j}
    theta_mask = jnp.asarray(_face_mask(g, 0), dtype)
    forward_theta = jnp.maximum(flux_theta_fwd, 0.0) * scale * theta_mask
    backward_theta = jnp.maximum(-flux_theta_bwd, 0.0) * scale * theta_mask
    # v faces (i, j+½): corners (i, j+1) and (i+1, j+1); J_v = (π(i+1, j+1) − π(i, j+1))/β_t
    left_c = log_corner[:-1][:, 1:]
    right_c = log_corner[1:][:, 1:]
    left_open = jnp.asarray(open_corner[:-1][:, 1:])
    right_open = jnp.asarray(open_corner[1:][:, 1:])
    log_up = jnp.roll(log_m, -1, axis=1)
    flux_v_fwd = ratio(right_c, right_open, log_m) - ratio(left_c, left_open, log_m)
    flux_v_bwd = ratio(right_c, right_open, log_up) - ratio(left_c, left_open, log_up)
    v_mask = jnp.asarray(_face_mask(g, 1), dtype)
    # friction: SG along v with the potential μv²/2
    v = v_c[None, :]
    step = 0.5 * mu * (jnp.roll(v, -1, axis=1) ** 2 - v**2)
    d = jnp.broadcast_to(d_v, g.shape)
    friction_fwd, friction_bwd = _rates(step / d * v_mask, d, d, h_v, v_mask)
    forward_v = friction_fwd + jnp.maximum(flux_v_fwd, 0.0) * scale * v_mask
    backward_v = friction_bwd + jnp.maximum(-flux_v_bwd, 0.0) * scale * v_mask
    return Generator(
        (forward_theta * clock_scale, forward_v * clock_scale),
        (backward_theta * clock_scale, backward_v * clock_scale),
        (),
        g,
        (),
        (True, True),
        clock,
    )


@float64_entry
def momentum_generator(
    grid: Grid,
    problem: Problem | None = None,
    *,
    hyper: Hyper,
    noise=None,
    loss: Callable | None = None,
    clock: str = "steps",
) -> Generator:
    """The generator of SGD with heavy-ball momentum β (friction μ = 1 − β) on a 2-axis
    grid (θ, v) for 1-D θ (see the module docstring; v is the velocity per SGD step).

    D_v = η² f σ²/(2S) from a constant ``noise`` (isotropic, or a 1×1 diagonal/full);
    state-dependent noise is not supported in the momentum form. The discrete stationary
    state is the Maxwell–Boltzmann law exp(−(μ/D_v)(ηL + v²/2)) at the cell centres,
    exactly; transients are first order in the grid spacing (upwind-like transport).
    The Péclet warning does not apply to this form.
    """
    g = _check_grid(grid)
    clock = _check_clock(clock)
    if g.ndim != 2:
        raise ValueError(f"grid: the momentum form needs a 2-axis (θ, v) grid, got {g.ndim} axes")
    if g.periodic[1]:
        raise ValueError("grid: the velocity axis cannot be periodic")
    eta, s, beta = _hyper_values(hyper, momentum_allowed=True)
    loss_fn = _loss_function(problem, loss, 1)
    if noise is None:
        raise ValueError("noise: the momentum form needs a constant noise model, e.g. sgdsde.noise.isotropic(σ²)")
    kind, cov = _covariance(noise, problem, 1)
    if kind == "callable":
        raise ValueError(
            "noise: the momentum form supports constant noise only (isotropic, or a 1×1 diagonal/full); "
            f"got the state-dependent {noise!r}"
        )
    d_v = eta**2 * _noise_factor(noise, s, problem) / (2.0 * s) * jnp.reshape(cov, (-1,))[0]
    if not is_traced(d_v) and not float(d_v) > 0:
        raise ValueError("noise: the velocity diffusion η² f σ²/(2S) must be > 0")
    loss_centres = sample(loss_fn, g.centers[0][:, None])
    loss_edges = sample(loss_fn, g.edges[0][:, None])
    clock_scale = 1.0 / eta if clock == "sme" else jnp.ones((), eta.dtype)
    gen = _build_momentum(g, clock, loss_centres, loss_edges, eta, d_v, 1.0 - beta, clock_scale)
    _check_finite(gen)
    return gen


