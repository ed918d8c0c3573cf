"""Shared fixtures for the sgdsde test suite."""

import jax
import pytest


@pytest.fixture
def x64():
    """Float64 for the duration of one test (a context manager, never a global config update)."""
    with jax.enable_x64(True):
        yield
