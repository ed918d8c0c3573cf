"""A sweep over two processes (``jax.distributed`` on the loopback address, 2 simulated
CPU devices each): each process runs its share of the chunks and writes its files to the
shared folder. Killed after some chunks and run again, it reuses the finished files
(untouched) and runs only the rest; the result equals the single-process sweep bit for
bit (each configuration is computed by the same program, blocks of config_block = 1)."""

import os
import signal
import socket
import subprocess
import sys
import time
import warnings

import jax
import numpy as np

from sgdsde import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# 4 η × 2 S = 8 configurations; batch-size groups {0, 2, 4, 6} (S = 4) and {1, 3, 5, 7}
# (S = 8), chunks of 2: [0, 2] → process 0, [4, 6] → 1, [1, 3] → 0, [5, 7] → 1
SETUP = """
import jax, jax.numpy as jnp, numpy as np
import sgdsde as sd
problem = sd.problems.quadratic(np.diag([1.0, 2.0]), np.eye(2), 16, key=jax.random.key(0))
ARGS = (jax.random.key(1), sd.sgd("iid"), problem, sd.Hyper.grid([0.05, 0.1, 0.2, 0.3], [4, 8]), jnp.ones(2), 30)
KWARGS = dict(replicas=4, observers=[sd.observers.endpoint()], config_block=1,
              configs_per_chunk=2)
"""
S = {}
exec(SETUP, S)

CHILD = """
import sys, time
import jax
out_dir, port, process, stop_after = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process,
                           initialization_timeout=60)  # before any computation
""" + SETUP + """
from sgdsde import sweep
assert (jax.process_count(), len(jax.local_devices()), len(jax.devices())) == (2, 2, 4)
def report(p):
    print("report", p.chunk, p.chunks, p.done, p.resumed, p.total, flush=True)
    if p.chunk == stop_after:
        time.sleep(600)  # the test kills us meanwhile
result = sweep.run_sweep(out_dir, *ARGS, **KWARGS, devices="all", progress=report)
print("complete", result.complete, flush=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(out_dir, stop_after, tmp_path, name):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip())
    port, children = _free_port(), []
    for process in (0, 1):
        log = open(tmp_path / f"{name}_{process}.log", "w")
        children.append((subprocess.Popen([sys.executable, "-c", CHILD, out_dir, str(port), str(process),
                                           str(stop_after)], cwd=ROOT, env=env, stdout=log,
                                          stderr=subprocess.STDOUT), log))
    return children


def _logs(tmp_path, name):
    return [(tmp_path / f"{name}_{p}.log").read_text() for p in (0, 1)]


def _files(out_dir):
    folder = os.path.join(out_dir, "configs")
    return sorted(n for n in os.listdir(folder) if not n.startswith(".")) if os.path.isdir(folder) else []


def test_two_processes_share_a_sweep_resume_after_a_kill_and_equal_one_process(tmp_path):
    out_dir = str(tmp_path / "grid")
    # first run: each process stops for good after its first chunk; killed once 4 files exist
    children = _launch(out_dir, 1, tmp_path, "first")
    deadline = time.time() + 120
    try:
        while len(_files(out_dir)) < 4:
            assert all(c.poll() is None for c, _ in children), _logs(tmp_path, "first")
            assert time.time() < deadline, _logs(tmp_path, "first")
            time.sleep(0.05)
    finally:
        for child, log in children:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
            child.wait()
            log.close()
    names = _files(out_dir)
    assert names == [f"config_{g:06d}.npz" for g in (0, 2, 4, 6)]  # the first chunk of each process
    before = {n: os.stat(os.path.join(out_dir, "configs", n)) for n in names}

    # second run: the rest, one chunk per process; each reports 2 of its 4 as resumed
    children = _launch(out_dir, 0, tmp_path, "second")
    try:
        for child, log in children:
            child.wait(timeout=120)
            log.close()
    finally:
        for child, _ in children:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
    logs = _logs(tmp_path, "second")
    for log in logs:
        assert "report 1 1 4 2 4" in log and "complete True" in log, logs
    for name, stat in before.items():  # reused, not rewritten
        now = os.stat(os.path.join(out_dir, "configs", name))
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)
    assert len(_files(out_dir)) == 8

    # one process, one device: the same numbers bit for bit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        single = sweep.run_sweep(tmp_path / "single", *S["ARGS"], **S["KWARGS"], progress=False)
    shared = sweep.load(out_dir)
    assert shared.complete and shared.grid_shape == (4, 2)
    jax.tree_util.tree_map(np.testing.assert_array_equal, shared.observations, single.observations)
    np.testing.assert_array_equal(shared.diverged, single.diverged)
    assert not np.array_equal(shared["endpoint"][:, 0], shared["endpoint"][:, 1])  # a real comparison
