"""Device sharding of runs: the same numbers on 1, 3 or 4 (simulated CPU) devices.

JAX fixes its device count when it starts, so the multi-device checks run in a fresh
Python process with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``; the
argument checks run here, on this process's devices.
"""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sgdsde as sd
from sgdsde import sharding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a subprocess with 4 CPU devices. Exact equality where the per-device programs
# compute every configuration at the same width (config_block) or reduce over replicas in
# one order (the runner gathers replicas before the observers' finalize); float rounding
# only where the vmap width differs (the default, no config_block).
FOUR_DEVICES = textwrap.dedent(
    """
    import tempfile, warnings
    import jax, jax.numpy as jnp, numpy as np
    import sgdsde as sd
    from sgdsde import runner, sharding, sweep

    assert len(jax.devices()) == 4, jax.devices()
    exact = lambda a, b: jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)

    # record where the states of every advance() call live
    layouts = []
    compile_ = runner._compile
    def spy(*args):
        start, advance, finish, unguarded = compile_(*args)
        def recorded(program, states_of):
            def call(*a):
                out = program(*a)
                leaf = jax.tree_util.tree_leaves(states_of(out))[0]
                layouts.append((len(leaf.sharding.device_set), leaf.shape, leaf.addressable_shards[0].data.shape))
                return out
            return call
        # the unguarded advance returns ((states, observed), finite); a chunk it finds
        # diverged is replayed by the guarded one (both recorded)
        return start, recorded(advance, lambda out: out[0]), finish, recorded(unguarded, lambda out: out[0][0])
    runner._compile = spy

    problem = sd.problems.quadratic(np.diag([1.0, 2.0, 3.0]), np.eye(3), 24, key=jax.random.key(0))
    observers = [sd.observers.endpoint(), sd.observers.moments(burn_in=5)]
    hyper = sd.Hyper.grid([0.05, 0.1, 0.2, 0.3, 0.4], [4, 12])  # 10 configurations
    args = (jax.random.key(1), sd.sgd("iid"), problem, hyper, jnp.ones(3), 30)

    # a grid computed two configurations at a time (config_block=2) on 1 device ...
    one = sd.run(*args, replicas=4, observers=observers, config_block=2)
    # ... and as a resumable sweep on 4 devices, masked like the grid run (grouped sweeps on
    # several devices and processes: tests/test_sweep_distributed.py): chunks of 6
    # configurations (the last one padded 4 -> 6), each padded to 8 = 4 devices x 2 (one block each)
    layouts.clear()
    swept = sweep.run_sweep(tempfile.mkdtemp(), *args, replicas=4, observers=observers, devices=4,
                            configs_per_chunk=6, config_block=2, progress=False, group_batch_sizes=False)
    exact(one.observations, swept.observations)
    exact((one.diverged, one.divergence_step), (swept.diverged, swept.divergence_step))
    assert set(layouts) == {(4, (8, 4, 3), (2, 4, 3))}, layouts  # 2 configurations per device

    # the default (the whole configuration axis of each device in one vmap, 16/4 = 4 wide
    # here against 2 above). XLA may round different widths differently (kernels and
    # threading depend on the shapes). Bound (tests/_rounding.py, iterated_map_atol): per
    # step (S + d + 8)·eps32·Σ|terms|, Σ|terms| = |θ| + η(‖A‖|θ| + max|x_i|), carried over
    # 30 steps contracting by ρ = max|1 − ηλ| (≤ 0.95: at most 20×); the moments are linear
    # (mean, its stderr) or quadratic (cov, its stderr: 2|θ|× the error of θ) in the states
    layouts.clear()
    split = sd.run(*args, replicas=4, observers=observers, devices=4)
    theta = max(1.0, float(np.abs(np.asarray(one["endpoint"])).max())) + 1.0  # |θ₀| = 1; + 1: the noise
    lam, etas = np.array([1.0, 2.0, 3.0]), np.array([0.05, 0.1, 0.2, 0.3, 0.4])
    rho = np.abs(1 - etas[:, None] * lam).max()
    per_step = (12 + 3 + 8) * np.finfo(np.float32).eps * (theta + 0.4 * (3 * theta + float(np.abs(problem.data).max())))
    delta = per_step * min(30, 1 / (1 - rho))
    atol = delta * max(1.0, 2 * theta)
    for a, b in zip(jax.tree_util.tree_leaves(one.observations), jax.tree_util.tree_leaves(split.observations)):
        np.testing.assert_allclose(a, b, rtol=0, atol=atol)
    exact(one.diverged, split.diverged)
    assert layouts[-1] == (4, (12, 4, 3), (3, 4, 3)), layouts  # 10 padded to 12

    # one configuration: the 8 replicas split over 4 devices (2 each), pooled statistics exact
    single = (jax.random.key(2), sd.sgd("iid"), problem, sd.Hyper(0.1, 6), jnp.ones(3), 30)
    alone = sd.run(*single, replicas=8, observers=observers)
    layouts.clear()
    spread = sd.run(*single, replicas=8, observers=observers, devices="all")
    exact(alone.observations, spread.observations)
    assert layouts[-1] == (4, (1, 8, 3), (1, 2, 3)), layouts

    # 6 replicas do not split over 4 devices: 3 are used, with a warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layout = sharding.plan(4, 1, 6)
    assert layout.num_devices == 3 and any(issubclass(w.category, sharding.ShardingWarning) for w in caught)
    print("OK")
    """
)


def test_four_devices_equal_one():
    # keep the caller's XLA_FLAGS (e.g. --xla_cpu_max_isa=AVX2 to emulate another host)
    flags = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", FOUR_DEVICES], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip().endswith("OK"), done.stdout + done.stderr


@pytest.mark.parametrize(
    "devices, message",
    [("gpu", "only string"), (0, r"\[1, "), (len(jax.devices()) + 1, r"\[1, "), ([1, 2], "jax.Device"),
     ([], "jax.Device"), (2.0, "must be None"), (True, "must be None")],
)
def test_bad_devices_raise_before_compiling(devices, message, monkeypatch):
    compiled = []
    import sgdsde.simulation

    monkeypatch.setattr(sgdsde.simulation, "_core", lambda *a, **k: compiled.append(1))
    monkeypatch.setattr(sd.runner, "_compile", lambda *a, **k: compiled.append(1))
    problem = sd.problems.quadratic([[1.0]], [[1.0]], 8, key=jax.random.key(0))
    with pytest.raises(ValueError, match=f"devices: .*{message}"):
        sd.run(jax.random.key(0), sd.sgd(), problem, sd.Hyper([0.1, 0.2], 2), jnp.zeros(1), 5, devices=devices)
    with pytest.raises(ValueError, match="config_block"):
        sd.run(jax.random.key(0), sd.sgd(), problem, sd.Hyper([0.1, 0.2], 2), jnp.zeros(1), 5, config_block=0)
    assert not compiled


def test_plan_pads_to_whole_blocks_per_device():
    device = jax.devices()[0]
    assert sharding.plan(None, 10, 4) is None
    layout = sharding.plan([device], 10, 4, block=3)
    assert (layout.axis, layout.num_devices, layout.padded_configs) == ("configs", 1, 12)
    assert sharding.plan(1, 1, 5).axis == "replicas"
    assert sharding.resolve_devices("all") == jax.devices()
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("x",))
    assert sharding.resolve_devices(mesh) == jax.devices()[:1]
    # padding repeats the last configuration (valid hyperparameters), dropped afterwards
    padded = sharding.pad_configs({"eta": np.array([0.1, 0.2, 0.3])}, 3, 5)
    np.testing.assert_array_equal(padded["eta"], [0.1, 0.2, 0.3, 0.3, 0.3])
