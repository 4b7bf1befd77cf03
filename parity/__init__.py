"""Framework-neutral core of the parity suite: specs, canonical weights, the hub and the harness.

Importing ``parity`` imports no deep-learning framework; ``get_backend(name)``
imports one on demand.
"""

from parity.backends import FRAMEWORKS, BackendUnavailable, InputError, available_backends, get_backend
from parity.dense_eval import dense_to_conv
from parity.port_check import port_check
from parity.specs import AnyNet, ResNeXtBlock, Stage, get_spec
from parity.weights import WeightsError, count_parameters, load_weights, save_weights, schema

__all__ = [
    "FRAMEWORKS",
    "AnyNet",
    "BackendUnavailable",
    "InputError",
    "ResNeXtBlock",
    "Stage",
    "WeightsError",
    "available_backends",
    "count_parameters",
    "dense_to_conv",
    "get_backend",
    "get_spec",
    "load_weights",
    "port_check",
    "save_weights",
    "schema",
]
