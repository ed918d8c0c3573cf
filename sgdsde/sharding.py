"""Device layouts for runs: the configuration (or replica) axis split over devices.

``sgdsde.run(..., devices=...)`` lays its ensemble out on a one-axis
:class:`jax.sharding.Mesh` and lets ``jax.jit`` partition the compiled program
(GSPMD; no ``shard_map``): the inputs are placed with :class:`~jax.sharding.NamedSharding`
and every step runs on the device that holds its slice.

- A hyperparameter grid (G > 1 configurations) is split along its flattened
  configuration axis. When G is not a multiple of the device count D (times
  ``config_block`` when given) the axis is padded to the next multiple with copies of
  the last configuration; the copies are computed and dropped.
- A single configuration splits its replica axis, over the largest number of the given
  devices that divides R (replicas cannot be padded: observers pool over them). Fewer
  devices than given is announced with a :class:`ShardingWarning`.

Randomness does not depend on the layout: replica r draws from fold_in(key, r) and every
configuration uses the same replica keys (common random numbers), so a configuration's
random numbers are the same on any device, with any padding. Rounding is the same when
every device computes configurations at one width: ``run(..., config_block=W)`` makes
results bit-identical whatever the device count; without it they agree to float
rounding (docs/sweeps.md).

Multi-host (several processes, ``jax.distributed.initialize()`` called first in each):
``devices="all"`` means ``jax.devices()``, the devices of every process; inputs are built
with ``jax.make_array_from_callback`` from the host values every process holds, and
results are gathered to every process with
``jax.experimental.multihost_utils.process_allgather``. Every process must call ``run``
with the same arguments. (Written for multi-host but tested on simulated CPU devices of
one process only.)
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

PyTree = Any

__all__ = ["Layout", "ShardingWarning", "resolve_devices", "plan", "pad_configs"]

_AXIS = "devices"


class ShardingWarning(UserWarning):
    """The run uses fewer devices than were given (e.g. replicas not divisible)."""


def resolve_devices(devices) -> list:
    """The devices named by ``devices``: ``"all"`` (``jax.devices()``, every process's), an
    int n (the first n of ``jax.devices()``), a sequence of ``jax.Device`` or a
    :class:`jax.sharding.Mesh` (its devices, flattened in mesh order)."""
    available = jax.devices()
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(f"devices: the only string allowed is 'all', got {devices!r}")
        return list(available)
    if isinstance(devices, Mesh):
        return list(np.asarray(devices.devices).ravel())
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            raise ValueError(
                f"devices: an integer must lie in [1, {len(available)}] (the devices JAX sees), got {devices}"
            )
        return list(available[: int(devices)])
    if isinstance(devices, (Sequence, np.ndarray)) and not isinstance(devices, (str, bytes)):
        found = list(np.asarray(devices, dtype=object).ravel()) if isinstance(devices, np.ndarray) else list(devices)
        if not found or not all(isinstance(d, jax.Device) for d in found):
            raise ValueError("devices: a sequence must hold one or more jax.Device objects")
        if len({id(d) for d in found}) != len(found):
            raise ValueError("devices: the sequence names a device more than once")
        return found
    raise ValueError(
        "devices: must be None, 'all', an integer count, a sequence of jax devices or a "
        f"jax.sharding.Mesh, got {type(devices).__name__}"
    )


class Layout(NamedTuple):
    """How one run is split: ``axis`` is ``"configs"`` (the flattened grid axis, padded to
    ``padded_configs``) or ``"replicas"``; ``mesh`` is a one-axis mesh of the devices used."""

    mesh: Mesh
    axis: str
    configs: int
    padded_configs: int

    @property
    def num_devices(self) -> int:
        return int(self.mesh.devices.size)

    # ------------------------------------------------------------- shardings
    def _sharding(self, spec: PartitionSpec) -> NamedSharding:
        return NamedSharding(self.mesh, spec)

    @property
    def replicated(self) -> NamedSharding:
        return self._sharding(PartitionSpec())

    @property
    def state_sharding(self) -> NamedSharding:
        """For arrays shaped (configs, replicas, …)."""
        spec = PartitionSpec(_AXIS) if self.axis == "configs" else PartitionSpec(None, _AXIS)
        return self._sharding(spec)

    @property
    def hyper_sharding(self) -> NamedSharding:
        """For the flattened hyperparameter arrays (configs,)."""
        return self._sharding(PartitionSpec(_AXIS) if self.axis == "configs" else PartitionSpec())

    @property
    def key_sharding(self) -> NamedSharding:
        """For the replica keys (replicas,)."""
        return self._sharding(PartitionSpec(_AXIS) if self.axis == "replicas" else PartitionSpec())

    # -------------------------------------------------------------- placing
    def pad_configs(self, tree: PyTree) -> PyTree:
        """See :func:`pad_configs`."""
        return pad_configs(tree, self.configs, self.padded_configs)

    def place(self, tree: PyTree, sharding: NamedSharding) -> PyTree:
        """Global arrays with the given sharding from host values every process holds."""
        return jax.tree_util.tree_map(lambda x: _put(x, sharding), tree)

    def place_states(self, states: PyTree) -> PyTree:
        """(replicas, …) initial states → (padded_configs, replicas, …), laid out; each
        device builds only its slice."""
        states = self.place(states, self.key_sharding)  # replicated, or split along replicas
        broadcast = jax.jit(
            lambda s: jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (self.padded_configs,) + x.shape), s),
            out_shardings=self.state_sharding,
        )
        return broadcast(states)

    def before_finish(self, tree: PyTree) -> PyTree:
        """Split along replicas: copy the states and observer accumulators to every device
        before the observers' ``finalize``, so that statistics pooled over replicas are
        reduced in one order, the single-device one (bit-identical results). Split along
        configurations: unchanged (``finalize`` works per configuration)."""
        if self.axis == "configs":
            return tree
        return jax.jit(lambda t: t, out_shardings=self.replicated)(tree)

    def gather(self, tree: PyTree) -> PyTree:
        """NumPy copies of (possibly multi-process) arrays, padding dropped along the leading
        configuration axis."""

        def one(x):
            if isinstance(x, jax.Array) and not x.is_fully_addressable:
                from jax.experimental import multihost_utils

                x = multihost_utils.process_allgather(x, tiled=True)
            x = np.asarray(x)
            return x[: self.configs] if self.padded_configs != self.configs else x

        return jax.tree_util.tree_map(one, tree)


def pad_configs(tree: PyTree, configs: int, padded: int) -> PyTree:
    """Pad every leaf's leading (configuration) axis from ``configs`` to ``padded`` with
    copies of its last entry (valid hyperparameters; the copies are dropped from results)."""
    if padded == configs:
        return tree
    return jax.tree_util.tree_map(
        lambda x: np.concatenate([np.asarray(x), np.repeat(np.asarray(x)[-1:], padded - configs, axis=0)]), tree
    )


def _put(x, sharding: NamedSharding):
    if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        return jax.random.wrap_key_data(_put(jax.random.key_data(x), sharding), impl=jax.random.key_impl(x))
    if sharding.is_fully_addressable:
        return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def plan(devices, configs: int, replicas: int, block: int = 1) -> Layout | None:
    """The layout of a run of ``configs`` configurations × ``replicas`` replicas on
    ``devices`` (see :func:`resolve_devices`); None for ``devices=None`` (the default
    device, no sharding). A grid is padded to a whole number of ``block``-configuration
    blocks per device."""
    if devices is None:
        return None
    found = resolve_devices(devices)
    count = len(found)
    if configs > 1:
        axis, padded = "configs", -(-configs // (count * block)) * count * block
    else:
        axis, padded = "replicas", configs
        used = max(d for d in range(1, count + 1) if replicas % d == 0)
        if used < count:
            if jax.process_count() > 1:
                raise ValueError(
                    f"replicas: a single configuration on {count} devices of several processes needs "
                    f"replicas divisible by {count}, got {replicas}"
                )
            warnings.warn(
                f"devices: {replicas} replicas of one configuration split over {used} of the {count} devices "
                "given (replicas are not padded: observers pool over them); choose replicas divisible by "
                f"{count} to use them all",
                ShardingWarning,
                stacklevel=3,
            )
        found = found[:used]
    mesh = Mesh(np.asarray(found, dtype=object), (_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))
    return Layout(mesh, axis, configs, padded)
