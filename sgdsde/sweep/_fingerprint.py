"""Fingerprints: a SHA-256 digest of a value, stable across processes — arrays by
content, functions by module, name, bytecode, constants, defaults and closures
(recursively; functions of libraries such as JAX and NumPy by name), containers by
their items. The sweep's manifest records one per argument (see :mod:`sgdsde.sweep`)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import types

import jax
import jax.numpy as jnp
import numpy as np

from ..hyper import Hyper

# functions of these packages are identified by module and name (not bytecode), with their
# defaults and closures
_LIBRARIES = ("jax", "jaxlib", "numpy", "optax", "flax", "equinox", "diffrax", "scipy", "builtins",
              "functools", "math", "operator")


def _digest(value) -> str:
    """SHA-256 of a value, stable across processes (module docstring: what it covers)."""
    h = hashlib.sha256()
    _feed(h, value, set(), 0)
    return h.hexdigest()


def _type_name(value) -> str:
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


def _feed(h, value, active: set, depth: int) -> None:
    def add(*parts):
        h.update(("\x1f".join(map(str, parts)) + "\x1e").encode())

    feed = lambda v: _feed(h, v, active, depth + 1)
    if depth > 32:
        add("deep", _type_name(value))
        return
    if value is None or isinstance(value, (bool, int, float, complex, str)):
        add(type(value).__name__, repr(value))
        return
    if isinstance(value, bytes):
        add("bytes", len(value))
        h.update(value)
        return
    if isinstance(value, jax.Array) and jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
        add("key", str(jax.random.key_impl(value)))
        value = jax.random.key_data(value)
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        arr = np.ascontiguousarray(np.asarray(value))
        add("array", arr.dtype.str, arr.shape)
        if arr.dtype.hasobject:  # the bytes would be addresses
            for item in arr.ravel().tolist():
                _feed(h, item, active, depth + 1)
        else:
            h.update(arr.tobytes())
        return
    if id(value) in active:
        add("cycle")
        return
    active.add(id(value))
    try:
        _feed_object(h, add, feed, value)
    finally:
        active.discard(id(value))


def _feed_object(h, add, feed, value) -> None:
    if isinstance(value, types.CodeType):
        add("code", value.co_name, value.co_names, value.co_varnames)
        h.update(value.co_code)
        for const in value.co_consts:
            feed(const)
    elif isinstance(value, types.FunctionType):
        module = value.__module__ or ""
        add("function", module, value.__qualname__)
        if module.split(".")[0] not in _LIBRARIES:  # library code: by name (its version is recorded)
            feed(value.__code__)
        feed(value.__defaults__)
        feed(value.__kwdefaults__)
        for cell in value.__closure__ or ():  # e.g. an optax schedule's values
            try:
                feed(cell.cell_contents)
            except ValueError:  # an empty cell
                add("empty cell")
    elif isinstance(value, types.MethodType):
        add("method")
        feed(value.__func__)
        feed(value.__self__)
    elif isinstance(value, functools.partial):
        add("partial")
        feed(value.func)
        feed(value.args)
        feed(value.keywords)
    elif isinstance(value, Hyper):
        add("Hyper")
        feed(value._values())
        feed(value.max_batch_size)
    elif isinstance(value, tuple) and hasattr(value, "_fields"):
        add("namedtuple", _type_name(value), value._fields)
        for item in value:
            feed(item)
    elif isinstance(value, (list, tuple)):
        add(type(value).__name__, len(value))
        for item in value:
            feed(item)
    elif isinstance(value, dict):
        add("dict", len(value))
        for k, v in value.items():
            feed(k)
            feed(v)
    elif isinstance(value, (set, frozenset)):
        add("set", len(value))
        for item in sorted(_digest(v) for v in value):
            add(item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        add("dataclass", _type_name(value))
        for field in dataclasses.fields(value):
            add(field.name)
            feed(getattr(value, field.name, None))
    elif callable(value) and hasattr(value, "__wrapped__"):  # functools.lru_cache, wraps
        add("wrapped", _type_name(value))
        feed(value.__wrapped__)
    elif callable(value):  # builtins, jitted functions, ufuncs: by name
        add("callable", _type_name(value), getattr(value, "__module__", ""),
            getattr(value, "__qualname__", getattr(value, "__name__", "")))
    else:
        add("object", _type_name(value))
