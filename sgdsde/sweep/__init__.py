"""Resumable sweeps: a long hyperparameter grid run chunk by chunk, each finished
configuration written to disk at once, restartable after an interruption.

    result = sweep.run_sweep("runs/grid", key, sd.sgd(), problem, sd.Hyper.grid(lrs, sizes),
                             init_params, num_steps, replicas=8, observers=[...])
    result = sweep.load("runs/grid")          # later, from any process

Groups and chunks. The grid's configurations, flattened in C order (index g = ravel of
the grid index), are grouped by batch size (``group_batch_sizes=True``, the default for a
new sweep): each group draws its minibatches at its own S, with no masked work (one
compilation per distinct S); ``False`` draws every chunk at the grid's largest S and
masks (one compilation). Each group is run ``configs_per_chunk`` configurations at a
time; each chunk is one call of :func:`sgdsde.run` over an array-valued
:class:`~sgdsde.Hyper` of that many configurations, computed ``config_block``
configurations at a time. The last chunk of a group is padded with copies of its last
configuration, so its chunks have the same shapes and reuse one compiled program.

Same numbers as one run. Replica r of every configuration draws from fold_in(key, r)
(common random numbers; init_params(key) too), and the first S indices of a minibatch
drawn at any size are the draw at S (docs/sampling.md), so a configuration's random
numbers depend on the key alone — not on its group, chunk, the other configurations of
that chunk, the devices, the processes or interruptions. Its floating-point rounding is
fixed by ``config_block`` (XLA rounds a vmapped computation differently at different
widths): a grouped sweep equals ``sgdsde.run(..., config_block=result.config_block)``
over each batch size's configurations bit for bit, a masked one the same over the whole
grid, on any devices and processes (``tests/test_sweep.py``,
``tests/test_sweep_grouped.py``, ``tests/test_sweep_distributed.py``); a grouped sweep
equals per-configuration runs and the masked sweep to float rounding.

On disk (``out_dir``):

- ``manifest.json``: the sweep's arguments (grid values, steps, replicas, clock, key,
  stepper and observer names, versions) and a SHA-256 fingerprint of each argument;
- ``structure.json``: the tree structure, shapes and dtypes of one configuration's results;
- ``configs/config_000017.npz``: one file per finished configuration (NumPy ``.npz``,
  loaded with ``allow_pickle=False``): the leaves of its observations (``obs_0``, …),
  ``diverged``, ``divergence_step``, ``divergence_time`` (replica axis R), the
  configuration's index (``config_index``), the sweep's fingerprint (``sweep``, a digest
  of the manifest's fingerprints), its hyperparameters and, with ``keep_state=True``, the
  final stepper states (``state_0``, …).

Every file is written under a temporary name in its folder, flushed to disk (fsync) and
renamed over its final name (atomic on POSIX file systems), so a killed process leaves
complete files and at most a temporary ``*.tmp`` file, which the next call deletes.

Checked files. Every configuration file is read back before it is used, by
:func:`run_sweep` when it resumes and by :func:`load`: it must be readable and complete,
hold its own index (a file renamed or copied to another index is caught), carry this
sweep's fingerprint (a file of another sweep is caught) and the shapes and dtypes of
``structure.json``. Resuming recomputes a file that fails, with a :class:`SweepWarning`
naming it; :func:`load` refuses with a ValueError naming it (delete it and resume).

Resuming. Called again with the same ``out_dir`` and arguments, :func:`run_sweep` skips
the configurations whose files exist (and pass the checks) and runs the rest. The arguments are first checked
against the manifest's fingerprints; a sweep with different arguments is refused with a
ValueError that names what differs. ``configs_per_chunk``, ``devices`` and ``progress``
may change between calls (they do not change the numbers); ``config_block``, which does
(by rounding), is taken from the manifest when not given. Functions (loss, stepper,
observers, schedules, an init function) are fingerprinted by module, name, bytecode,
constants, defaults and the values captured in their closures (arrays by content),
recursively (functions of JAX, NumPy, optax, Flax, … by name, defaults and closures,
not bytecode); global variables they read are not. ``allow_code_changes=True`` accepts a
changed function fingerprint (after a refactor that keeps the numbers; your
responsibility) — never changed data, grid, key, steps or replicas.

One sweep writes to one ``out_dir`` at a time (there is no lock). Under
``jax.distributed`` every process calls :func:`run_sweep` with the same arguments and
``out_dir`` on a file system they share: each runs a share of the chunks fixed by the grid
(chunk c of the whole grid belongs to process c mod P) on its own devices, writes its
files, waits for the others' and returns the whole result; bit-identical to one process,
and resumable (docs/sweeps.md, "A sweep over several processes").
"""

from ._results import SweepProgress, SweepResult, SweepWarning
from ._run import load, run_sweep

__all__ = ["run_sweep", "load", "SweepResult", "SweepProgress", "SweepWarning"]
