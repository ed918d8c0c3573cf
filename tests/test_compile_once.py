"""A run written inline compiles once.

``sd.run(key, sd.euler_maruyama(sd.noise.isotropic(1.0), 0.5), ..., observers=[sd.observers.moments()])``
typed again (a notebook cell run again, a loop over seeds) builds new stepper, noise and
observer objects each time; the factories return one object per argument values, so the
second and third calls reuse the compiled program. Compilations are counted with
``jax.monitoring`` (the backend-compile event that JAX records once per XLA compile).

The observer table is checked against ``sd.observers.__all__``: a new observer factory
fails here until it has an entry (and compiles once).
"""

from __future__ import annotations

import contextlib

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sgdsde as sd

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # jax._src.dispatch.BACKEND_COMPILE_EVENT

PROBLEM = sd.problems.quadratic(np.diag([1.0, 2.0]), np.eye(2), 16, key=jax.random.key(0))
HYPER = sd.Hyper(0.1, 4)
X0 = jnp.array([0.5, -0.5])
NUM_STEPS = 4


@contextlib.contextmanager
def compile_names():
    """The names of the functions XLA compiles inside the block (a list, filled as they
    compile). jax 0.8.0 (the floor) has no public ``unregister_event_duration_listener``: the
    private remover of the same jax.monitoring registry is used there."""
    names = []

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == BACKEND_COMPILE_EVENT:
            names.append(str(kwargs.get("fun_name", "?")))

    unregister = getattr(jax.monitoring, "unregister_event_duration_listener", None)
    if unregister is None:
        from jax._src import monitoring

        unregister = monitoring._unregister_event_duration_listener_by_callback
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield names
    finally:
        unregister(listener)


def count_compiles(fn) -> int:
    """Number of XLA compilations while ``fn()`` runs (its result blocked on)."""
    with compile_names() as names:
        jax.block_until_ready(fn())
    return len(names)


def assert_compiles_once(run_inline, hint: str = "") -> None:
    """The first call may compile; the second and third (new objects, same values) do not."""
    run_inline()
    again = count_compiles(lambda: [run_inline(), run_inline()])
    assert again == 0, f"{again} compilations in the second and third inline calls {hint}"


def first_coordinate_sign(params):  # basins' classify / first_passage's region: module-level functions
    return (params[0] > 0).astype(jnp.int32)


def below_zero(params):
    return params[0] < 0


def noise_function(params):
    return jnp.diag(1.0 + params**2)


# how to write each observer factory of sd.observers.__all__ inline
OBSERVERS = {
    "endpoint": lambda: sd.observers.endpoint(),
    "snapshots": lambda: sd.observers.snapshots(2),
    "moments": lambda: sd.observers.moments(burn_in=1),
    "loss_curve": lambda: sd.observers.loss_curve(2),
    "basins": lambda: sd.observers.basins(first_coordinate_sign, 2),
    "histogram": lambda: sd.observers.histogram([[-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]]),
    "first_passage": lambda: sd.observers.first_passage(below_zero),
    "divergence": None,  # attached to every run by the runner itself: checked below
    "sharpness": lambda: sd.observers.sharpness(every=2, num_iterations=2),
    "gradient_noise": lambda: sd.observers.gradient_noise(every=2),
    "noise_scales": lambda: sd.observers.noise_scales(every=2, num_examples=8),
}
NOT_FACTORIES = {"Observer", "RunContext", "scaling_rule_check"}  # classes; a function of a run's result

STEPPERS = {
    "sgd iid": lambda: sd.sgd("iid"),
    "sgd subset": lambda: sd.sgd("subset"),
    "sgd epoch": lambda: sd.sgd(sampling="epoch"),
    "euler_maruyama": lambda: sd.euler_maruyama(sd.noise.isotropic(1.0), 0.5),
    "underdamped": lambda: sd.underdamped(sd.noise.isotropic(1.0), 0.5),
    "diffrax_stepper": lambda: sd.diffrax_stepper(diffrax.Euler(), sd.noise.isotropic(1.0), 0.5),
}
if hasattr(sd, "svag"):  # steppers added since: where this version has them
    STEPPERS["svag"] = lambda: sd.svag(2.0, sampling="iid")
if hasattr(sd, "sme2"):
    STEPPERS["sme2"] = lambda: sd.sme2(sd.noise.isotropic(1.0), 0.5)

NOISES = {  # isotropic: in STEPPERS
    "diagonal": lambda: sd.noise.diagonal([1.0, 2.0]),
    "full": lambda: sd.noise.full(np.array([[1.0, 0.2], [0.2, 1.0]])),
    "empirical": lambda: sd.noise.empirical(),
    "from_function": lambda: sd.noise.from_function(noise_function),
}


def test_observers_written_inline_compile_once():
    # every observer factory of sd.observers.__all__ in one run (one compile: the suite stays fast);
    # the message names the factories that build a new object for the same arguments
    names = sorted(set(sd.observers.__all__) - NOT_FACTORIES)
    makers = [OBSERVERS[name] for name in names if OBSERVERS[name] is not None]  # KeyError: add an entry
    assert sd.observers.divergence() is sd.observers.divergence()  # carried by every run

    def run_inline():
        return sd.run(jax.random.key(1), sd.sgd("iid"), PROBLEM, HYPER, X0, num_steps=NUM_STEPS, replicas=2,
                      observers=[make() for make in makers])

    fresh = [name for name in names if OBSERVERS[name] is not None and OBSERVERS[name]() is not OBSERVERS[name]()]
    assert_compiles_once(run_inline, f"new objects each call from {fresh}")


@pytest.mark.parametrize("name", sorted(STEPPERS))
def test_stepper_written_inline_compiles_once(name):
    make = STEPPERS[name]
    assert_compiles_once(lambda: sd.run(jax.random.key(1), make(), PROBLEM, HYPER, X0, num_steps=NUM_STEPS,
                                        replicas=2, observers=[sd.observers.endpoint()]))


@pytest.mark.parametrize("name", sorted(NOISES))
def test_noise_model_written_inline_compiles_once(name):
    make = NOISES[name]
    assert_compiles_once(lambda: sd.run(jax.random.key(1), sd.euler_maruyama(make(), 0.5), PROBLEM, HYPER, X0,
                                        num_steps=NUM_STEPS, replicas=2, observers=[sd.observers.endpoint()]))


def test_the_counter_sees_a_new_compilation():
    # the counter itself: a new num_steps is a new program and must be counted
    run = lambda steps: sd.run(jax.random.key(1), sd.sgd("iid"), PROBLEM, HYPER, X0,  # noqa: E731
                               num_steps=steps, replicas=2, observers=[sd.observers.endpoint()])
    run(NUM_STEPS)
    assert count_compiles(lambda: run(NUM_STEPS + 7)) >= 1


def test_progress_chunks_compile_the_scan_once():
    """With progress shown the run is scanned in about 20 chunks of equal length where a
    size between n/40 and n/10 divides n (999 steps: 27 × 37, where ⌈n/20⌉ = 50 left a last
    chunk of 49), so the chunk's scan compiles once, not once more for the shorter last
    chunk. Counted: the compilations of the chunk program (``advance_blocks``) in a first
    run; with ``chunk_size=50`` the same run compiles it twice."""
    stepper = sd.sgd("iid")
    hyper = sd.Hyper(0.0625, 3)  # values no other test uses: a fresh compile
    with compile_names() as names:
        jax.block_until_ready(sd.run(jax.random.key(5), stepper, PROBLEM, hyper, X0, 999, replicas=3,
                                     progress=True).state.params)
        assert sum("advance" in name for name in names) == 1, names
        names.clear()
        jax.block_until_ready(sd.run(jax.random.key(5), stepper, PROBLEM, hyper, X0, 999, replicas=3,
                                     chunk_size=50, progress=False).state.params)
        assert sum("advance" in name for name in names) == 2, names  # 50 (new length) and 49
