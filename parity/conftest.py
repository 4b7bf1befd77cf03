"""Shared models: each framework builds a spec once per dtype, and every transfer test reuses it
(loading weights overwrites every tensor). ``rig``/``source`` keep every model for the session;
``transfers`` and ``models`` keep one spec's models at a time, for test files with large nets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from parity.backends import FRAMEWORKS, BackendUnavailable, installed_frameworks
from parity.checks import Models, Transfers
from parity.harness import TransferRig


def installed(framework: str) -> bool:
    return framework in installed_frameworks()


def not_installed(framework: str) -> str:
    return f"{framework} is not installed: pip install -e '.[{framework}]'"


class Installed(dict):
    """A rig's {framework: ...}: a framework that is not installed raises BackendUnavailable (a skip)."""

    def __missing__(self, framework: str):
        raise BackendUnavailable(not_installed(framework))


def named_frameworks(item: pytest.Item) -> set[str]:
    """The frameworks among a parametrised test's parameters (``fw``, ``pair``, ``src``/``dst``, ...)."""
    callspec = getattr(item, "callspec", None)
    values = [v for value in (callspec.params.values() if callspec else ()) for v in _items(value)]
    return {value for value in values if isinstance(value, str) and value in FRAMEWORKS}


def _items(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test parametrised with a framework that is not installed is skipped, naming its pip extra."""
    missing = [fw for fw in FRAMEWORKS if not installed(fw)]
    for item in items:
        absent = [fw for fw in missing if fw in named_frameworks(item)]
        if absent:
            item.add_marker(pytest.mark.skip(reason="; ".join(map(not_installed, absent))))


def skip_if_not_installed(error: BackendUnavailable) -> None:
    """Skip with ``error``'s message where some framework is not installed; with all four installed, a backend
    that cannot be imported is a broken install, and its test fails."""
    if all(installed(fw) for fw in FRAMEWORKS):
        raise error
    pytest.skip(str(error))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    """A test (or fixture) that asks for a backend whose framework is not installed is skipped with its message."""
    try:
        return (yield)
    except BackendUnavailable as error:
        skip_if_not_installed(error)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    try:
        return (yield)
    except BackendUnavailable as error:
        skip_if_not_installed(error)


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
    """rig(spec, dtype) -> TransferRig over the installed frameworks, built once per (spec, dtype)."""
    cache: dict = {}

    def get(spec, dtype):
        if (spec, dtype) not in cache:
            rig = TransferRig(spec, [fw for fw in FRAMEWORKS if installed(fw)], dtype)
            rig.backends, rig.models = Installed(rig.backends), Installed(rig.models)
            cache[spec, dtype] = rig
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
