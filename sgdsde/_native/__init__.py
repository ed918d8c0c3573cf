"""Native CPU kernels for the samplers without replacement, as XLA FFI custom calls.

XLA's CPU backend runs the gathers and scatters of a per-replica deduplication or swap
slowly (tens of ns an element, vectorised across replicas), while a scalar loop over one
replica at a time runs at a few ns an element. ``samplers.cc`` holds two such loops, which
compute exactly what the pure-JAX samplers in :mod:`sgdsde.sampling` compute (the same
Threefry blocks and bounded draws, the same deduplication, the same swaps: equal bits,
``tests/test_native.py``):

- ``sgdsde_subset``: the first ``max_size`` distinct values of the stream
  c_t = ⌊x_t·N/2⁶⁴⌋, t = 0, 1, …, for each key (a bitset of N bits per thread);
- ``sgdsde_epoch``: one step of the per-replica Fisher–Yates shuffle, in place.

The file is compiled on first use (``c++ -O3``, about 6 s) into a cache directory,
``$SGDSDE_CACHE_DIR`` or ``$XDG_CACHE_HOME/sgdsde`` (default ``~/.cache/sgdsde``), under a
name that hashes the source, the jaxlib version and the machine, then loaded with ctypes and
registered as FFI targets for the CPU platform. Where no compiler works, or with
``SGDSDE_NATIVE=0`` in the environment, :func:`available` is False and the samplers use
their pure-JAX path (the same numbers, slower). On other platforms (GPU, TPU) the samplers
always use the JAX path (``jax.lax.platform_dependent``).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jax

__all__ = ["available", "library_path", "SUBSET", "EPOCH"]

SUBSET = "sgdsde_subset"
EPOCH = "sgdsde_epoch"
_SOURCE = Path(__file__).with_name("samplers.cc")
_log = logging.getLogger("sgdsde")


def _cache_dir() -> Path:
    explicit = os.environ.get("SGDSDE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sgdsde"


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def library_path() -> Path:
    """Where the compiled kernels are (or will be) cached for this source, jaxlib and machine."""
    import jaxlib

    tag = hashlib.sha256(
        _SOURCE.read_bytes() + f"|{jaxlib.__version__}|{platform.machine()}|{sys.platform}".encode()
    ).hexdigest()[:16]
    return _cache_dir() / f"samplers-{tag}.so"


def _build(target: Path) -> None:
    """Compile samplers.cc into ``target`` (written to a temporary name, then renamed, so
    that processes building at the same time never load a partial file)."""
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError("no C++ compiler (c++, g++ or clang++) on PATH")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    command = [compiler, "-O3", "-std=c++17", "-shared", "-fPIC", "-w", f"-I{jax.ffi.include_dir()}",
               str(_SOURCE), "-o", partial]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """True when the native kernels are compiled, loaded and registered for the CPU
    (compiling them on the first call); False where that failed or ``SGDSDE_NATIVE=0``."""
    if os.environ.get("SGDSDE_NATIVE", "1").strip() in ("0", "false", "no", "off"):
        return False
    try:
        path = library_path()
        if not path.exists():
            _log.info("sgdsde: compiling the native sampler kernels into %s (once per machine)", path)
            _build(path)
        library = ctypes.cdll.LoadLibrary(str(path))
        for name, symbol in ((SUBSET, library.SgdsdeSubsetDraw), (EPOCH, library.SgdsdeEpochDraw)):
            jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(symbol), platform="cpu")
            jax.ffi.register_ffi_target_as_batch_partitionable(name)
        return True
    except Exception as error:  # no compiler, read-only cache, unloadable library, ...
        _log.warning("sgdsde: native sampler kernels unavailable (%s); using the pure-JAX samplers "
                     "(the same numbers, slower on CPU)", error)
        return False
