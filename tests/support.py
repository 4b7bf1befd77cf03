"""Helpers shared by the backend test files."""

from __future__ import annotations

import numpy as np


def randn(shape, dtype="float32", seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def assert_same_bits(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    """Same names in the same order, and every tensor bit-for-bit equal with the same dtype."""
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].tobytes() == b[key].tobytes(), key


def max_relative_diff(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual - expected| relative to max |expected|, or absolute below 1."""
    return float(np.abs(actual - expected).max() / max(1.0, np.abs(expected).max()))


def hide_framework(monkeypatch, module, framework: str, message: str) -> None:
    """``module.get_backend(framework)`` raises ``BackendUnavailable(message)``, as where that framework
    is not installed; every other backend is the real one."""
    from parity.backends import BackendUnavailable

    real = module.get_backend

    def get_backend(name):
        if name == framework:
            raise BackendUnavailable(message)
        return real(name)

    monkeypatch.setattr(module, "get_backend", get_backend)
