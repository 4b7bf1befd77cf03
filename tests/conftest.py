"""The parity tests' skips for frameworks that are not installed apply here too (``parity/conftest.py``)."""

from parity.conftest import pytest_collection_modifyitems, pytest_runtest_call, pytest_runtest_setup

__all__ = ["pytest_collection_modifyitems", "pytest_runtest_call", "pytest_runtest_setup"]
