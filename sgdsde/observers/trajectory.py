"""Observers that record the trajectory: endpoint, snapshots, loss curve, divergence."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._base import Observer, _cached, _every_recorder

# --------------------------------------------------------------------- endpoint
@_cached
def endpoint() -> Observer:
    """Final parameters of every replica, shape (R, …) per leaf."""
    return Observer(
        "endpoint",
        lambda states, ctx: (),
        lambda obs, states, t, ctx: obs,
        lambda obs, states, ctx: states.params,
    )


@_cached
def snapshots(every: int) -> Observer:
    """Parameters of every replica at steps 0, every, 2·every, …:
    ``{"times": (T,), "values": pytree of (T, R, …)}``."""
    return _every_recorder("snapshots", every, lambda states, ctx: states.params)


@_cached
def loss_curve(every: int) -> Observer:
    """Full-data loss L(θ) of every replica at steps 0, every, 2·every, …:
    ``{"times": (T,), "values": (T, R)}`` (diverged replicas: last finite value)."""
    return _every_recorder("loss_curve", every, lambda states, ctx: jax.vmap(ctx.problem.loss)(states.params))


# ------------------------------------------------------------------ divergence
@_cached
def divergence() -> Observer:
    """Built into every run: per replica, the step k whose update θ_k → θ_{k+1} first
    produced a non-finite value (−1 if none)."""

    def init(states, ctx):
        return jnp.where(states.diverged, 0, -1).astype(jnp.int32)

    def update(first, states, t, ctx):
        return jnp.where((first < 0) & states.diverged, t - 1, first)

    def finalize(first, states, ctx):
        return {"diverged": states.diverged, "step": first}

    return Observer("divergence", init, update, finalize)


