"""Training parity: train-mode BatchNorm state, gradients and optimizer steps equal in four frameworks.

Each backend's ``impl_X/training.py`` implements ``train_forward``, ``gradients`` and ``trainer`` from the
framework-neutral pieces here: the optimizer spec (``parity.training.optim``), the canonical gradients and
PyTorch's running variance (``parity.training.core``), the naive ports' training pitfalls
(``parity.training.variants``), the K-step driver behind ``parity train-check`` (``parity.training.run``) and
``parity explain --train``, which finds where a naive port diverges and why (``parity.training.explain``).
"""

from parity.training.core import (
    NonFinite,
    batch_counts,
    canonical_gradients,
    canonical_statistics,
    check_finite,
    gradient_scales,
    relative_diffs,
    statistics,
    synthetic_batches,
    trainable,
    unbiased_running_var,
    without_dropout,
)
from parity.training.optim import OPTIMIZERS, OptimizerSpec, UnsupportedOption, reference_step

__all__ = [
    "OPTIMIZERS",
    "NonFinite",
    "OptimizerSpec",
    "UnsupportedOption",
    "batch_counts",
    "canonical_gradients",
    "canonical_statistics",
    "check_finite",
    "gradient_scales",
    "relative_diffs",
    "reference_step",
    "statistics",
    "synthetic_batches",
    "trainable",
    "unbiased_running_var",
    "without_dropout",
]
