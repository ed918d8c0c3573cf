"""Which programs XLA compiles, in which thread: a jax.monitoring listener (the backend
compile event carries the program's name) for tests of compile-ahead and caching."""

import contextlib
import threading

import jax.monitoring

_EVENT = "/jax/core/compile/backend_compile_duration"
_active: list = []


def _listener(event, duration, **kwargs):
    if event == _EVENT:
        for log in _active:
            log.append((threading.current_thread().name, kwargs.get("fun_name")))


jax.monitoring.register_event_duration_secs_listener(_listener)


@contextlib.contextmanager
def compiles():
    """Yields a list that fills with (thread name, program name) for every XLA compile
    inside the block."""
    log = []
    _active.append(log)
    try:
        yield log
    finally:
        _active.remove(log)
