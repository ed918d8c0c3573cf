"""Resumable sweeps: chunked runs equal one run per batch size (grouped, the default) or
one run over the whole grid (masked), an interrupted (killed) sweep resumes with nothing
lost or redone, changed arguments are refused, files load back."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings

import jax
import numpy as np
import pytest

import sgdsde as sd
from sgdsde import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The sweep of every test, built from the same text here and in the subprocess that is
# killed (so the argument fingerprints must agree across processes). 4 × 3 = 12
# configurations; η = 3 diverges (|1 − 3·λ| ≥ 2 for λ ∈ {1, 2, 3}: overflow within 60 steps).
SETUP = """
import jax, jax.numpy as jnp, numpy as np
import sgdsde as sd
problem = sd.problems.quadratic(np.diag([1.0, 2.0, 3.0]), np.eye(3), 24, key=jax.random.key(0))
hyper = sd.Hyper.grid([0.05, 0.1, 0.2, 3.0], [4, 8, 24])
observers = [sd.observers.endpoint(), sd.observers.moments(burn_in=10), sd.observers.loss_curve(20)]
ARGS = (jax.random.key(1), sd.sgd("iid"), problem, hyper, jnp.ones(3), 60)
KWARGS = dict(replicas=3, observers=observers, clock="sme", config_block=2)
"""
S = {}
exec(SETUP, S)
ARGS, KWARGS = S["ARGS"], S["KWARGS"]
TOTAL = 12

CHILD = SETUP + """
import sys, time
from sgdsde import sweep
def slow(report):  # stop for good after the second chunk: the parent kills us meanwhile
    if report.chunk == 2:
        time.sleep(120)
sweep.run_sweep(sys.argv[1], *ARGS, **KWARGS, configs_per_chunk=2, progress=slow)
"""


def _exact(a, b):
    jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


def _assert_equal_to_run(result, reference):
    assert result.grid_shape == reference.grid_shape == (4, 3) and result.complete
    for name in reference.observations:
        _exact(result[name], reference[name])
    _exact((result.diverged, result.divergence_step, result.divergence_time),
           (reference.diverged, reference.divergence_step, reference.divergence_time))


def _config_files(out_dir, temporaries=False):
    """The configuration files of a sweep folder (with ``temporaries``: every file)."""
    names = os.listdir(os.path.join(out_dir, "configs"))
    return sorted(n for n in names if temporaries or not n.startswith("."))


class _Stacked:
    """Runs of the grid's columns (one batch size each) stacked into the 4 × 3 grid."""

    def __init__(self, runs):
        stack = lambda *xs: jax.tree_util.tree_map(lambda *x: np.stack(x, axis=1), *xs)
        self.grid_shape = (4, 3)
        self.observations = stack(*(r.observations for r in runs))
        self.state = stack(*(r.state for r in runs))
        self.diverged, self.divergence_step, self.divergence_time = (
            stack(*(getattr(r, n) for r in runs)) for n in ("diverged", "divergence_step", "divergence_time"))

    def __getitem__(self, name):
        return self.observations[name]


ETAS, SIZES = [0.05, 0.1, 0.2, 3.0], [4, 8, 24]


@pytest.fixture(scope="module")
def reference():
    """What a grouped sweep computes: one uninterrupted run per batch size (a column of
    the grid, its 4 learning rates) at the sweep's config_block — the same program, so
    equal bit for bit."""
    key, stepper, problem, _, init, steps = ARGS
    with pytest.warns(sd.DivergenceWarning):
        return _Stacked([sd.run(key, stepper, problem, sd.Hyper(np.asarray(ETAS), s), init, steps, **KWARGS)
                         for s in SIZES])


@pytest.fixture(scope="module")
def masked_reference():
    """What a masked sweep computes: one run over the whole grid (draws at S_max = 24)."""
    with pytest.warns(sd.DivergenceWarning):
        return sd.run(*ARGS, **KWARGS)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A sweep in chunks of 4 configurations (3 chunks, one per batch size), keeping the final
    states; run before the reference runs, so that its compilations are counted."""
    out_dir = str(tmp_path_factory.mktemp("sweep") / "grid")
    programs = sd.runner._compile(ARGS[1], tuple(KWARGS["observers"]) + (sd.simulation.DIVERGENCE,), (60, 3), (1, 2))
    advances = (programs[3], programs[1])  # unguarded (checked at the chunk's end), guarded
    compiled_before = [advance._cache_size() for advance in advances]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = sweep.run_sweep(out_dir, *ARGS, **KWARGS, configs_per_chunk=4, keep_state=True)
    compiled = tuple(advance._cache_size() - before for advance, before in zip(advances, compiled_before))
    return out_dir, result, compiled, caught


def test_sweep_equals_one_run_and_compiles_once(finished, reference, capsys):
    out_dir, result, compiled, caught = finished
    _assert_equal_to_run(result, reference)
    _exact(result.state["params"], reference.state.params)
    _exact(result.state["velocity"], reference.state.velocity)
    # one program per batch size, one chunk each; every chunk holds η = 3, which diverges,
    # so each is computed again with the guarded step (runner: guards at chunk ends)
    assert compiled == (3, 3)
    assert result.config_block == 2 and result.clock == "sme" and result.num_steps == 60
    np.testing.assert_array_equal(result.hyper["learning_rate"], np.asarray(S["hyper"].learning_rate))
    np.testing.assert_array_equal(result.hyper["batch_size"], np.asarray(S["hyper"].batch_size))
    # one file per configuration, holding its own index and hyperparameters
    names = _config_files(out_dir)
    assert names == [f"config_{g:06d}.npz" for g in range(TOTAL)]
    with np.load(os.path.join(out_dir, "configs", names[7]), allow_pickle=False) as data:
        i, j = np.unravel_index(7, (4, 3))
        assert int(data["config_index"]) == 7 and float(data["learning_rate"]) == [0.05, 0.1, 0.2, 3.0][i]
        assert int(data["batch_size"]) == [4, 8, 24][j]
    # divergence (the η = 3 row) is reported once, at the end, with grid indices
    messages = [str(w.message) for w in caught if issubclass(w.category, sd.DivergenceWarning)]
    assert len(messages) == 1 and "config (3, 0)" in messages[0] and "config (2," not in messages[0]
    assert result.diverged[3].all() and not result.diverged[:3].any()
    # load() from the files alone gives the same
    again = sweep.load(out_dir)
    _assert_equal_to_run(again, reference)


def test_masked_sweep_equals_one_run_over_the_grid(tmp_path, masked_reference, monkeypatch):
    """group_batch_sizes=False: every chunk draws at the grid's S_max = 24 and masks (one
    program for the 3 chunks, the last one padded to 4), equal to sd.run over the whole grid."""
    drawn_at, run = [], sd.runner.run
    monkeypatch.setattr(sd.runner, "run", lambda *a, **k: drawn_at.append(a[3].max_batch_size) or run(*a, **k))
    with pytest.warns(sd.DivergenceWarning):
        result = sweep.run_sweep(tmp_path / "grid", *ARGS, **KWARGS, configs_per_chunk=4, progress=False,
                                 group_batch_sizes=False)
    assert drawn_at == [24, 24, 24]
    _assert_equal_to_run(result, masked_reference)
    # the setting is the sweep's: a resume without it keeps it, a different one is refused
    with pytest.warns(sd.DivergenceWarning):
        sweep.run_sweep(tmp_path / "grid", *ARGS, **KWARGS, progress=False)
    with pytest.raises(ValueError, match=r"run \(group_batch_sizes False → True\)"):
        sweep.run_sweep(tmp_path / "grid", *ARGS, **KWARGS, group_batch_sizes=True)


def test_killed_sweep_resumes_without_losing_or_redoing_work(tmp_path, reference):
    out_dir = str(tmp_path / "grid")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    log = tmp_path / "child.log"
    with open(log, "w") as output:
        child = subprocess.Popen([sys.executable, "-c", CHILD, out_dir], cwd=ROOT, env=env, stdout=output,
                                 stderr=subprocess.STDOUT)
    configs = os.path.join(out_dir, "configs")
    deadline = time.time() + 300
    try:
        while not (os.path.isdir(configs) and len(_config_files(out_dir)) >= 4):  # a temporary is not finished
            assert child.poll() is None, log.read_text()
            assert time.time() < deadline, "the sweep subprocess wrote nothing"
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    before = {n: os.stat(os.path.join(configs, n)) for n in _config_files(out_dir)}
    assert len(before) == 4  # two chunks of two configurations
    # a temporary file as a process killed while writing leaves it
    stale = os.path.join(configs, ".config_000009.npz.999.tmp")
    with open(stale, "wb") as file:
        file.write(b"half a file")

    reports = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sd.DivergenceWarning)
        result = sweep.run_sweep(out_dir, *ARGS, **KWARGS, configs_per_chunk=4, progress=reports.append)
    _assert_equal_to_run(result, reference)
    # nothing redone: the earlier files are untouched, and only the 8 others were run
    for name, stat in before.items():
        now = os.stat(os.path.join(configs, name))
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert [(r.done, r.resumed, r.chunk, r.chunks) for r in reports] == [(8, 4, 1, 2), (12, 4, 2, 2)]
    # nothing lost or duplicated: one file per configuration, no temporary left
    assert _config_files(out_dir, temporaries=True) == [f"config_{g:06d}.npz" for g in range(TOTAL)]


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(num_steps=61), r"run \(num_steps 60 → 61\)"),
        (dict(key=jax.random.key(2)), "key"),
        (dict(hyper=sd.Hyper.grid([0.05, 0.1, 0.2, 2.0], [4, 8, 24])), "grid"),
        (dict(replicas=4), r"replicas 3 → 4"),
        (dict(config_block=3), r"config_block 2 → 3"),
        (dict(problem=sd.problems.quadratic(np.diag([1.0, 2.0, 3.0]), np.eye(3), 24, key=jax.random.key(5))),
         "problem_data"),
        (dict(observers=[sd.observers.endpoint()]), "observers differ.*allow_code_changes"),
        (dict(stepper=sd.sgd("subset")), "stepper"),
    ],
)
def test_changed_sweep_is_refused(finished, change, message, monkeypatch):
    out_dir = finished[0]
    monkeypatch.setattr(sd.runner, "run", lambda *a, **k: pytest.fail("ran"))
    key, stepper, problem, hyper, init, steps = ARGS
    args = dict(key=key, stepper=stepper, problem=problem, hyper=hyper, init_params=init, num_steps=steps)
    kwargs = dict(KWARGS, keep_state=True)
    for name in ("replicas", "config_block", "observers"):
        if name in change:
            kwargs[name] = change.pop(name)
    args.update(change)
    with pytest.raises(ValueError, match=f"different arguments: .*{message}"):
        sweep.run_sweep(out_dir, **args, **kwargs)


def test_allow_code_changes_and_finished_sweep(finished, reference, monkeypatch, capsys):
    out_dir = finished[0]
    monkeypatch.setattr(sd.runner, "run", lambda *a, **k: pytest.fail("ran"))
    kwargs = dict(KWARGS, keep_state=True, observers=[sd.observers.endpoint()])
    with pytest.warns(sweep.SweepWarning, match="observers changed"), pytest.warns(sd.DivergenceWarning):
        result = sweep.run_sweep(out_dir, *ARGS, **kwargs, allow_code_changes=True)
    _assert_equal_to_run(result, reference)  # nothing to run: loaded as they were
    assert "all 12 configurations were finished earlier" in capsys.readouterr().err


def test_load_incomplete(finished, reference, tmp_path):
    out_dir = str(tmp_path / "copy")
    shutil.copytree(finished[0], out_dir)
    os.remove(os.path.join(out_dir, "configs", "config_000005.npz"))
    with pytest.raises(ValueError, match="1 of 12 configurations .* not finished"):
        sweep.load(out_dir)
    partial = sweep.load(out_dir, allow_incomplete=True)
    missing = np.unravel_index(5, (4, 3))
    assert not partial.complete and not partial.completed[missing] and partial.completed.sum() == 11
    assert np.isnan(partial["endpoint"][missing]).all() and (partial.divergence_step[missing] == -1).all()
    assert not partial.diverged[missing].any()
    keep = partial.completed
    _exact(partial["endpoint"][keep], reference["endpoint"][keep])
    _exact(partial["moments"]["cov"][keep], reference["moments"]["cov"][keep])


def _rewrite(path, **changes):
    """Rewrite a configuration file with some of its arrays replaced."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {n: data[n] for n in data.files}
    np.savez(path, **{**arrays, **changes})


# (what is done to a copy of the finished sweep, the file that is then wrong, what load says)
DAMAGE = {
    # config 3's result renamed as config 5's
    "swapped": (lambda c: os.replace(os.path.join(c, "config_000003.npz"), os.path.join(c, "config_000005.npz")),
                5, "holds configuration 3, not 5"),
    "truncated": (lambda c: _truncate(os.path.join(c, "config_000007.npz")), 7, "is unreadable: truncated"),
    "garbage": (lambda c: open(os.path.join(c, "config_000009.npz"), "wb").write(b"not a result"), 9,
                "is unreadable"),
    "other sweep": (lambda c: _rewrite(os.path.join(c, "config_000002.npz"), sweep=np.asarray("0" * 64)), 2,
                    "was written by a different sweep"),
    "wrong shape": (lambda c: _rewrite(os.path.join(c, "config_000004.npz"), diverged=np.zeros(2, bool)), 4,
                    r"holds diverged of shape \(2,\)"),
}


def _truncate(path):
    with open(path, "rb") as file:
        raw = file.read()
    with open(path, "wb") as file:
        file.write(raw[: len(raw) // 2])


def _damaged_copy(finished, tmp_path, kinds):
    out_dir = str(tmp_path / "copy")
    shutil.copytree(finished[0], out_dir)
    for kind in kinds:
        DAMAGE[kind][0](os.path.join(out_dir, "configs"))
    return out_dir


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_load_refuses_a_damaged_or_foreign_file_naming_it(finished, tmp_path, kind):
    out_dir = _damaged_copy(finished, tmp_path, [kind])
    _, index, reason = DAMAGE[kind]
    path = os.path.join(out_dir, "configs", f"config_{index:06d}.npz")
    for allow_incomplete in (False, True):
        with pytest.raises(ValueError, match=f"{re.escape(path)} {reason}.*Delete them and run run_sweep again"):
            sweep.load(out_dir, allow_incomplete=allow_incomplete)


def test_resume_recomputes_damaged_files_with_a_warning(finished, reference, tmp_path):
    out_dir = _damaged_copy(finished, tmp_path, list(DAMAGE))
    reports = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = sweep.run_sweep(out_dir, *ARGS, **KWARGS, configs_per_chunk=4, keep_state=True,
                                 progress=reports.append)
    messages = [str(w.message) for w in caught if issubclass(w.category, sweep.SweepWarning)]
    assert len(messages) == len(DAMAGE)
    for _, index, reason in DAMAGE.values():
        path = os.path.join(out_dir, "configs", f"config_{index:06d}.npz")
        assert any(re.search(f"{re.escape(path)} {reason}.*computing that configuration again", m)
                   for m in messages), (path, messages)
    # the 5 damaged files and config 3 (renamed away) are run again, the other 6 kept: two
    # per batch size (3, 9 at S = 4; 4, 7 at S = 8; 2, 5 at S = 24), a chunk each
    assert [(r.done, r.resumed) for r in reports] == [(8, 6), (10, 6), (12, 6)]
    _assert_equal_to_run(result, reference)
    _exact(result.state["params"], reference.state.params)
    _assert_equal_to_run(sweep.load(out_dir), reference)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(configs_per_chunk=0), "configs_per_chunk"),
        (dict(config_block=-1), "config_block"),
        (dict(progress="yes"), "progress"),
        (dict(keep_state=1), "keep_state"),
        (dict(replicas=0), "replicas"),
        (dict(hyper=sd.Hyper(np.array([0.1, -0.1]), 4)), "learning_rate"),
        (dict(devices=0), "devices"),
        (dict(group_batch_sizes="yes"), "group_batch_sizes"),
    ],
)
def test_bad_input_raises_before_running_or_writing(tmp_path, kwargs, message, monkeypatch):
    monkeypatch.setattr(sd.runner, "run", lambda *a, **k: pytest.fail("ran"))
    out_dir = tmp_path / "grid"
    key, stepper, problem, hyper, init, steps = ARGS
    args = dict(key=key, stepper=stepper, problem=problem, hyper=kwargs.pop("hyper", hyper), init_params=init,
                num_steps=steps)
    with pytest.raises(ValueError, match=message):
        sweep.run_sweep(out_dir, **args, **dict(KWARGS, **kwargs))
    assert not out_dir.exists()


def test_a_failed_background_write_raises(tmp_path, monkeypatch):
    """Configuration files are written by a background thread: an error there (a full disk)
    is raised by run_sweep, after the chunks already written are on disk."""
    from sgdsde.sweep import _run

    real = _run._write_atomic
    written = []

    def fail_on_the_fifth(path, write, sync_folder=True):
        if len(written) == 4:
            raise OSError(28, "No space left on device")
        written.append(path)
        real(path, write, sync_folder)

    monkeypatch.setattr(_run, "_write_atomic", fail_on_the_fifth)
    with warnings.catch_warnings(), pytest.raises(OSError, match="No space left"):
        warnings.simplefilter("ignore", sd.DivergenceWarning)
        sweep.run_sweep(tmp_path / "grid", *ARGS, **KWARGS, configs_per_chunk=2, progress=False)
    assert sorted(os.listdir(tmp_path / "grid" / "configs")) == sorted(os.path.basename(p) for p in written)


def test_bad_folders(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="out_dir: .* not a folder"):
        sweep.run_sweep(a_file, *ARGS, **KWARGS)
    with pytest.raises(ValueError, match="manifest.json is missing"):
        sweep.load(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "config_000000.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="not a sweep folder"):
        sweep.run_sweep(tmp_path, *ARGS, **KWARGS)
    with pytest.raises(ValueError, match="out_dir: must be a path"):
        sweep.load(3)


def test_fingerprints_see_closures_and_are_stable():
    """Functions are fingerprinted by code and captured values (an optax schedule's
    numbers, a closure's array), the same for equal functions built twice."""
    import optax

    digest = sweep._fingerprint._digest
    assert digest(optax.linear_schedule(0.2, 0.05, 20)) == digest(optax.linear_schedule(0.2, 0.05, 20))
    assert digest(optax.linear_schedule(0.2, 0.05, 20)) != digest(optax.linear_schedule(0.2, 0.06, 20))
    scaled = lambda c: (lambda x: c * x)
    assert digest(scaled(np.ones(3))) == digest(scaled(np.ones(3))) != digest(scaled(np.full(3, 2.0)))
    assert digest(lambda x: x + 1) != digest(lambda x: x + 2)
    assert digest({"a", "b", "c"}) == digest({"c", "b", "a"})
    assert digest(sd.observers.moments(burn_in=10)) != digest(sd.observers.moments(burn_in=11))
