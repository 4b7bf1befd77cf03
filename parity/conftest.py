"""Shared models: each framework builds a spec once per dtype, and every transfer test reuses it
(loading weights overwrites every tensor). ``rig``/``source`` keep every model for the session;
``transfers`` and ``models`` keep one spec's models at a time, for test files with large nets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from parity.checks import Models, Transfers
from parity.harness import TransferRig

# Fuzzed parity: every example builds four models (JAX and Keras compile each new
# configuration), so examples take seconds; no deadline, a bounded CI run by default.
settings.register_profile(
    "ci", max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.register_profile(
    "deep", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("ci")


@pytest.fixture(scope="session")
def rig():
    """rig(spec, dtype) -> TransferRig over all four frameworks, built once per (spec, dtype)."""
    from parity.backends import FRAMEWORKS

    cache: dict = {}

    def get(spec, dtype):
        if (spec, dtype) not in cache:
            cache[spec, dtype] = TransferRig(spec, FRAMEWORKS, dtype)
        return cache[spec, dtype]

    return get


@pytest.fixture(scope="session")
def source(rig):
    """source(spec, dtype, shape, fw, train=False) -> (fw's exported weights, fw's output, input), cached."""
    cache: dict = {}

    def get(spec, dtype, shape, fw, train=False):
        key = (spec, dtype, shape, fw, train)
        if key not in cache:
            x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(dtype)
            weights, y = rig(spec, dtype).source(fw, x, train)
            cache[key] = (weights, y, x)
        return cache[key]

    return get


@pytest.fixture(scope="module")
def transfers():
    """A test file's ``parity.checks.Transfers``: one (spec, dtype)'s models at a time, freed after the file."""
    cache = Transfers()
    yield cache
    cache.clear()


@pytest.fixture(scope="module")
def models():
    """A test file's ``parity.checks.Models``: one spec's models at a time, freed after the file."""
    cache = Models()
    yield cache
    cache.clear()
