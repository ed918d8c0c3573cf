"""Trace and spectral density of the Hessian: Hutchinson's estimator (probes batched under
vmap) and stochastic Lanczos quadrature (spectral density, log-determinant)."""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree
from jaxtyping import Array

from .._checks import check_int as _check_int
from .._checks import is_traced, memoize_abstract
from .. import _threefry

from ._products import _flat_operator, _orthogonalize, _prepare
from ._results import Estimate, HutchppEstimate, LogDetEstimate, SpectralDensity, TraceEstimate, _estimate
from .eigen import _STARTS, _lanczos_core, _lanczos_start

PyTree = Any


# ----------------------------------------------------------------------------- trace
def _probe_map(fn, keys, batch_size):
    return lax.map(fn, keys, batch_size=batch_size)


# Hutchinson's trace and the three Hessian-norm estimators share one function; the mode
# is static, so each compiles only its own per-probe quantity (a traced lax.switch
# compiled all four — forward-over-forward, an HVP and two gradients — on every first call).
_PROBES = {"trace": 0, "exact": 1, "forward": 2, "central": 3}


def _probe_sampler(fun, params, epsilon, mode):
    """``sample(key)``, one probe of :func:`_probe_core`: mode 0: zᵀHz, z Rademacher
    (:func:`_quadratic_form`); modes 1–3: ‖Hv‖², v ~ N(0, I), with Hv exact (1) or by
    forward (2) or central (3) differences of gradients, the parameters moving a distance
    ε along v/‖v‖ (Hv ≈ ‖v‖ Δg/ε)."""
    flat, unravel = ravel_pytree(params)
    # the linearised gradient only where it is used (mode 1): tracing it costs time otherwise
    matvec = _flat_operator(fun, params)[0] if mode == _PROBES["exact"] else None
    flat_fun = lambda x: fun(unravel(x))
    flat_grad = lambda x: ravel_pytree(jax.grad(fun)(unravel(x)))[0]
    g0 = flat_grad(flat) if mode == _PROBES["forward"] else None  # once, outside the probe loop

    def sample(k):
        if mode == _PROBES["trace"]:
            # Rademacher z from the key's uniform bits: exactly −sign(normal(k)) (both threshold
            # the same uniform at ½), and zᵀHz is even in z, so the values are those of the
            # earlier sign-of-normal probes, bit for bit, without the normal's erf⁻¹ to compile
            # (Threefry as elementwise ops: 0.12 s to compile against 0.28 s for jax.random's)
            return _quadratic_form(flat_fun, flat, _threefry.rademacher(k, flat.shape, flat.dtype))
        v = jax.random.normal(k, flat.shape, flat.dtype)
        size = jnp.linalg.norm(v)
        step = (epsilon / size) * v
        if mode == _PROBES["exact"]:
            return _squared_norm(matvec(v))
        if mode == _PROBES["forward"]:
            return _squared_norm(size * (flat_grad(flat + step) - g0) / epsilon)
        return _squared_norm(size * (flat_grad(flat + step) - flat_grad(flat - step)) / (2 * epsilon))

    return sample


@functools.partial(jax.jit, static_argnames=("mode", "num_samples", "batch_size"))
def _probe_core(fun, params, key, epsilon, mode, num_samples: int, batch_size) -> Estimate:
    """The probes of :func:`_probe_sampler` for ``jax.random.split(key, num_samples)``, run
    ``batch_size`` at a time under ``jax.vmap`` (one at a time for None) in one program."""
    sample = _probe_sampler(fun, params, epsilon, mode)
    return _estimate(_probe_map(sample, jax.random.split(key, num_samples), batch_size))


def _rademacher_row(key, index, num: int, shape, dtype):
    """Rademacher vector ``index`` of ``num``, from key ``index`` of ``key``'s split: the z of
    probe ``index`` of :func:`_probe_core` (only that key of the split is computed: a
    separate compiled split cost a first call 0.4 s), and Hutch++'s Ω and z rows."""
    return _threefry.rademacher(_threefry.split_key(key, num, index), shape, dtype)


_rademacher_probe = jax.jit(_rademacher_row, static_argnames=("num", "shape", "dtype"))


@jax.jit
def _quadratic_form_at(fun, params, z):
    """zᵀ H z at ``params`` for a flat z (:func:`_quadratic_form`), compiled alone."""
    flat, unravel = ravel_pytree(params)
    return _quadratic_form(lambda x: fun(unravel(x)), flat, z)


@memoize_abstract
def _flat_spec(params) -> jax.ShapeDtypeStruct:
    """Shape and dtype of the flat parameter vector, without forming it (an eager
    concatenation compiles four small programs: 0.08 s of a first call); once per shapes."""
    return jax.eval_shape(lambda p: ravel_pytree(p)[0], params)


_INDEX = jax.ShapeDtypeStruct((), jnp.int32)  # a probe index, for lowering


def _host_trace_samples(fun, params, key, num_samples: int) -> np.ndarray:
    """The zᵀHz of :func:`_probe_core`'s trace probes, in a Python loop over two small
    compiled programs, the Rademacher draw and the quadratic form, compiled at the same
    time: the draw in a worker thread (XLA compiles without holding the GIL). Everything is
    traced and lowered in this thread, under its JAX configuration (x64 and the other
    context-manager settings are thread-local); the worker only compiles. A first call for
    a 94k-parameter MLP compiles in about the time of the quadratic form alone (0.35–0.45 s)
    instead of 0.55–0.8 s for the two in one program; later calls reuse both (JAX's compile
    caches). Drawing probes ahead in the worker while the form compiled was measured and
    not kept (first calls 1.43–1.72 s against 1.28–1.67 s without)."""
    z_spec = _flat_spec(params)
    draw_lowered = _rademacher_probe.lower(key, _INDEX, num_samples, z_spec.shape, z_spec.dtype)
    with ThreadPoolExecutor(max_workers=1) as pool:
        draw_job = pool.submit(draw_lowered.compile)
        form = _quadratic_form_at.lower(fun, params, z_spec).compile()
        draw = draw_job.result()
    return np.stack([np.asarray(form(fun, params, draw(key, np.int32(i)))) for i in range(num_samples)])


def _probe_estimate(fun, params, key, epsilon, mode, num_samples: int, batch_size) -> Estimate:
    """:func:`_probe_core`, or, for Hutchinson's trace probed one at a time with nothing
    traced, the same probes by :func:`_host_trace_samples`: equal to :func:`_probe_core`'s to
    rounding (another program; tested), and a first call compiles two small programs side by
    side instead of a loop over probes (0.4 s instead of 1.2 s for a 94k-parameter MLP,
    whose 100 probes take 0.9 s). The mean and standard error are formed in NumPy (equal
    to the compiled ones to rounding; a compiled reduction costs another 0.15 s the first
    time)."""
    if mode != _PROBES["trace"] or batch_size is not None or is_traced((fun, params, key, epsilon)):
        return _probe_core(fun, params, key, epsilon, mode, num_samples, batch_size)
    return _estimate(_host_trace_samples(fun, params, key, num_samples), np)


def _quadratic_form(flat_fun: Callable, flat: Array, z: Array) -> Array:
    """zᵀHz = d²/dε² fun(θ + ε z) at ε = 0, forward over forward mode (exact, not a
    difference): no backward pass, about 1.5× fewer flops than zᵀ(Hz) by an HVP."""
    return jax.jvp(lambda x: jax.jvp(flat_fun, (x,), (z,))[1], (flat,), (z,))[1]


def _squared_norm(x):
    return jnp.vdot(x, x)


def _check_batch_size(batch_size, num: int):
    if batch_size is None:
        return None
    return min(_check_int(batch_size, "batch_size", 1), num)


def hutchinson_trace(
    fun: Callable[[PyTree], Array],
    params: PyTree,
    *,
    key: Array,
    num_samples: int = 100,
    batch_size: int | None = None,
) -> TraceEstimate:
    """tr H ≈ (1/n) Σ_i z_iᵀ H z_i with n = ``num_samples`` Rademacher probes (±1 entries).

    Unbiased; Var(zᵀHz) = 2 Σ_{i≠j} H_ij², so the standard error (sample standard
    deviation / √n, reported) shrinks like 1/√n. Each zᵀHz is the second directional
    derivative d²/dε² fun(params + ε z) (forward over forward mode: cost about 1.5
    gradients, ~1.5× less than an HVP). Probes run one after another (memory of one), or
    ``batch_size`` at a time (``jax.vmap``: matrix–matrix work, batch_size× the memory);
    the same ``key`` gives the same probes for every batch_size.
    """
    fun, d, key = _prepare(fun, params, key)
    num_samples = _check_int(num_samples, "num_samples", 2)
    batch_size = _check_batch_size(batch_size, num_samples)
    return _probe_estimate(fun, params, key, 1.0, _PROBES["trace"], num_samples, batch_size)


# ----------------------------------------------------------------------------- Hutch++
# Hutch++'s s + r Rademacher vectors are rows 0 … s+r−1 of one split of the call's key:
# Ω's rows first, then the residual probes' z (one key each: no d × r block is formed).


@jax.jit
def _hutchpp_basis(fun, params, omega):
    """Q (s × d, orthonormal rows) = orth(H Ωᵀ): s HVPs through one compiled loop body
    (the linearised gradient), then a QR (Householder: even if HΩᵀ is rank deficient)."""
    matvec = _flat_operator(fun, params)[0]
    return jnp.linalg.qr(lax.map(matvec, omega).T)[0].T


_project_out = jax.jit(_orthogonalize)


@functools.partial(jax.jit, static_argnames=("sketch_size", "num_probes"))
def _hutchpp_core(fun, params, key, sketch_size: int, num_probes: int) -> HutchppEstimate:
    """Hutch++ as one program (under ``jax.jit``/``vmap``): Ω's rows, :func:`_hutchpp_basis`,
    then vᵀHv (:func:`_quadratic_form`) for the s rows of Q and the r residual probes
    w_j = (I − QQᵀ)z_j, the probes through one compiled loop body."""
    flat = ravel_pytree(params)[0]
    row = lambda i: _rademacher_row(key, i, sketch_size + num_probes, flat.shape, flat.dtype)
    basis = _hutchpp_basis(fun, params, lax.map(row, jnp.arange(sketch_size)))
    deflated = jnp.sum(lax.map(lambda q: _quadratic_form_at(fun, params, q), basis))
    residual = lambda j: _quadratic_form_at(fun, params, _project_out(row(sketch_size + j), basis))
    est = _estimate(lax.map(residual, jnp.arange(num_probes)))
    return HutchppEstimate(deflated + est.mean, est.stderr, est.samples, deflated)


def _host_hutchpp(fun, params, key, sketch_size: int, num_probes: int) -> HutchppEstimate:
    """:func:`_hutchpp_core` for concrete arguments, as a Python loop over four small
    compiled programs: the Rademacher row (:func:`hutchinson_trace`'s), the basis (s HVPs
    and the QR), the projection w = (I − QQᵀ)z and the quadratic form vᵀHv (also
    Hutchinson's). The basis compiles in this thread while a worker thread compiles the
    row, draws Ω, and compiles the other two (XLA compiles without holding the GIL; all
    tracing stays in this thread, whose JAX configuration is thread-local). The same values
    as the one program to rounding (tested)."""
    z_spec = _flat_spec(params)
    basis_spec = jax.ShapeDtypeStruct((sketch_size,) + z_spec.shape, z_spec.dtype)
    draw_lowered = _rademacher_probe.lower(key, _INDEX, sketch_size + num_probes, z_spec.shape, z_spec.dtype)
    rest_lowered = (_project_out.lower(z_spec, basis_spec), _quadratic_form_at.lower(fun, params, z_spec))
    basis_lowered = _hutchpp_basis.lower(fun, params, basis_spec)

    def draw_omega():
        draw = draw_lowered.compile()
        return draw, np.stack([np.asarray(draw(key, np.int32(i))) for i in range(sketch_size)])

    with ThreadPoolExecutor(max_workers=1) as pool:  # one worker: the two jobs run in turn
        omega_job = pool.submit(draw_omega)
        rest_job = pool.submit(lambda: [low.compile() for low in rest_lowered])
        basis_program = basis_lowered.compile()
        draw, omega = omega_job.result()
        basis = basis_program(fun, params, omega)
        project, form = rest_job.result()
    # the rows of Q through NumPy: iterating over a JAX array compiles an unstack (0.1 s)
    deflated = np.sum([np.asarray(form(fun, params, q)) for q in np.asarray(basis)])
    samples = np.stack([np.asarray(form(fun, params, project(draw(key, np.int32(sketch_size + j)), basis)))
                        for j in range(num_probes)])
    est = _estimate(samples, np)
    dtype = est.samples.dtype
    return HutchppEstimate(jnp.asarray(np.asarray(est.mean) + deflated, dtype), est.stderr, est.samples,
                           jnp.asarray(deflated, dtype))


def hutchpp_trace(
    fun: Callable[[PyTree], Array],
    params: PyTree,
    *,
    key: Array,
    num_products: int = 30,
    sketch_size: int | None = None,
) -> HutchppEstimate:
    """tr H by Hutch++ (Meyer, Musco, Musco & Woodruff 2021): exact on the dominant
    subspace, Hutchinson on the rest.

    With s = ``sketch_size`` (default ``num_products // 3``) and r = num_products − 2s
    residual probes: Y = H Ω for s Rademacher vectors Ω (s HVPs), Q = orth(Y) (d × s),
    then tr H ≈ tr(QᵀHQ) + (1/r) Σ_j w_jᵀ H w_j, w_j = (I − QQᵀ) z_j with z_j Rademacher.
    tr(QᵀHQ) (s quadratic forms) is exact; the residual term is Hutchinson's estimator of
    tr((I − QQᵀ) H (I − QQᵀ)), unbiased for every Q, so the whole is unbiased and its only
    random error given Q is the residual probes': ``stderr`` = their sample standard
    deviation / √r. Its variance is 2 Σ_{i≠j} of the squared off-diagonal entries of the
    deflated Hessian, which drops far below Hutchinson's 2 Σ_{i≠j} H_ij² when a few large
    eigenvalues dominate ‖H‖_F² (error O(1/m) instead of O(1/√m) for a PSD H); with
    rank H ≤ s it is exact. When the spectrum is flat (no few dominant eigenvalues) it
    gains little and Hutchinson's cheaper probes win. Cost: s HVPs for the sketch (forward
    over the gradient linearised once, through one compiled loop body), a QR of d × s, and
    s + r quadratic forms vᵀHv (forward over forward, like :func:`hutchinson_trace`'s
    probes, about 1.5× cheaper than an HVP): the cost of m = 2s + r products or less.
    Called with concrete arguments it runs as a Python loop over small compiled programs,
    compiled side by side (the same values as under ``jax.jit`` to rounding). The s + r
    Rademacher vectors (Ω's rows, then the residual probes) are keys 0 … s+r−1 of a split
    of ``key``, drawn one at a time, so no d × r block is held.
    """
    fun, d, key = _prepare(fun, params, key)
    num_products = _check_int(num_products, "num_products", 4)
    if sketch_size is None:
        sketch_size = num_products // 3
    sketch_size = _check_int(sketch_size, "sketch_size", 1)
    if num_products - 2 * sketch_size < 2:
        raise ValueError(
            f"sketch_size: leaves {num_products - 2 * sketch_size} residual probes of num_products = {num_products} "
            "(2 · sketch_size for the sketch and the deflated trace); at least 2 are needed for a standard error"
        )
    if sketch_size > d:
        raise ValueError(f"sketch_size: must be at most the number of parameters d = {d}, got {sketch_size}")
    if is_traced((fun, params, key)):
        return _hutchpp_core(fun, params, key, sketch_size, num_products - 2 * sketch_size)
    return _host_hutchpp(fun, params, key, sketch_size, num_products - 2 * sketch_size)


# ----------------------------------------------------------------------------- SLQ
@functools.partial(jax.jit, static_argnames=("num_probes", "m", "batch_size"))
def _slq_core(fun, params, key, num_probes: int, m: int, batch_size: int):
    """(nodes, weights) of :func:`spectral_density`, batch_size probes at a time (vmap)."""
    matvec, flat, _ = _flat_operator(fun, params)
    zero = jnp.zeros_like(flat)

    def probe(l):
        result = _lanczos_start(matvec, flat, jax.random.fold_in(key, l), zero, _STARTS["rademacher"], m)
        values, weights, _ = result.ritz()
        return values, weights

    return lax.map(probe, jnp.arange(num_probes), batch_size=batch_size)


def spectral_density(
    fun: Callable[[PyTree], Array],
    params: PyTree,
    *,
    key: Array,
    num_probes: int = 10,
    num_steps: int = 50,
    batch_size: int | None = None,
) -> SpectralDensity:
    """Spectral density of H by stochastic Lanczos quadrature (Ghorbani et al. 2019).

    ``num_probes`` Rademacher probes u = z/√d, ``num_steps`` Lanczos steps each (capped
    at d): per probe, nodes = Ritz values, weights = squared first components of T's
    eigenvectors. See :class:`SpectralDensity` for moments, traces of functions of H and
    a smoothed density. Probe l uses ``jax.random.fold_in(key, l)``. With
    ``batch_size=None`` the probes run one after another through the compiled program of
    :func:`lanczos` (so both share one compile; under an outer ``jax.jit`` the probe loop
    is unrolled); with ``batch_size=b`` one program runs b independent Lanczos
    recurrences at a time under ``jax.vmap`` (b HVPs per step as matrix–matrix work, b×
    the memory: b bases of num_steps × d), the same probes and values to rounding.
    """
    fun, d, key = _prepare(fun, params, key)
    num_probes = _check_int(num_probes, "num_probes", 1)
    m = min(_check_int(num_steps, "num_steps", 1), d)
    if batch_size is not None:
        nodes, weights = _slq_core(fun, params, key, num_probes, m, _check_batch_size(batch_size, num_probes))
        return SpectralDensity(nodes, weights, d)
    zero = jnp.zeros_like(ravel_pytree(params)[0])
    nodes, weights = [], []
    for probe in range(num_probes):
        result = _lanczos_core(fun, params, jax.random.fold_in(key, probe), zero, _STARTS["rademacher"], m)
        values, probe_weights, _ = result.ritz()
        nodes.append(values)
        weights.append(probe_weights)
    return SpectralDensity(jnp.stack(nodes), jnp.stack(weights), d)


def log_determinant(
    fun: Callable[[PyTree], Array],
    params: PyTree,
    *,
    key: Array,
    num_probes: int = 10,
    num_steps: int = 50,
    batch_size: int | None = None,
) -> LogDetEstimate:
    """log det H = tr log H ≈ d · (1/P) Σ_l Σ_j τ_lj² log θ_lj, by SLQ (see
    :func:`spectral_density`), with its standard error over the P probes.

    Needs a positive definite H: raises ValueError when a Ritz value is ≤ 0 (Ritz values
    lie inside [λ_min, λ_max], so H then has an eigenvalue ≤ 0). Inside ``jax.jit`` this
    check cannot raise: the result is then NaN and ``min_ritz_value`` ≤ 0 says why. The
    quadrature error (log is not a polynomial) falls geometrically with ``num_steps``,
    faster for a better-conditioned H; with num_steps = d it is exact to rounding.
    ``batch_size``: probes per vmapped batch, as in :func:`spectral_density`.
    """
    density = spectral_density(fun, params, key=key, num_probes=num_probes, num_steps=num_steps, batch_size=batch_size)
    smallest = jnp.min(density.nodes)
    if not isinstance(smallest, jax.core.Tracer) and not float(smallest) > 0:
        raise ValueError(
            f"fun: the Hessian is not positive definite at params (a Ritz value is {float(smallest):.4g} ≤ 0), "
            "so log det H is undefined; log_determinant needs a strict minimum"
        )
    safe = jnp.where(density.nodes > 0, density.nodes, jnp.nan)
    est = _estimate(density.dimension * jnp.sum(density.weights * jnp.log(safe), axis=-1))
    return LogDetEstimate(est.mean, est.stderr, est.samples, smallest)


