"""PyTorch's side of training parity: the reference every other framework is compared to.

PyTorch's conventions are the canonical ones: ``running_var`` takes the unbiased batch variance
(normalisation uses the biased one), momentum 0.1 weighs the new batch statistic, SGD adds the weight
decay to the gradient, AdamW decays ``w -= lr * wd * w``. ``train_forward`` and ``gradients`` run the
model with ``torch.func.functional_call`` on copies of its buffers, so the model never changes; a
``Trainer`` steps the model itself with ``torch.optim``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

# torch.optim's first step imports torch._dynamo and with it triton's C extension, which crashes the process
# when TensorFlow was loaded first: it is loaded with this module, before any other framework trains.
import torch._dynamo  # noqa: E402, F401  isort: skip

from impl_torch.backend import _mode, check_input, model_dtype, table
from parity.training import OptimizerSpec, canonical_gradients, canonical_statistics
from parity.training.variants import check_train_variant
from parity.weights import Weights

name = "torch"


def _loss(model: nn.Module, buffers: dict, x: np.ndarray, labels: np.ndarray):
    logits = functional_call(model, ({**dict(model.named_parameters()), **buffers}), (torch.from_numpy(x),))
    return F.cross_entropy(logits, torch.from_numpy(labels)), logits


def train_forward(model: nn.Module, x_nchw: np.ndarray) -> tuple[np.ndarray, Weights]:
    """(logits on batch statistics, the running statistics that this batch updates them to)."""
    x = check_input(model.spec, x_nchw, model_dtype(model))
    buffers = {key: b.clone() for key, b in model.named_buffers()}
    with _mode(model, True), torch.no_grad():
        logits = functional_call(model, buffers, (torch.from_numpy(x),))
    return logits.numpy(), canonical_statistics(model.spec, table(model.spec), _numpy(buffers))


def gradients(model: nn.Module, x_nchw: np.ndarray, labels: np.ndarray) -> tuple[float, Weights]:
    """(mean softmax cross-entropy in train mode, {canonical name: its gradient}); the model is unchanged."""
    x = check_input(model.spec, x_nchw, model_dtype(model))
    buffers = {key: b.clone() for key, b in model.named_buffers()}
    with _mode(model, True):
        loss, _ = _loss(model, buffers, x, labels)
        names, params = zip(*model.named_parameters(), strict=True)
        grads = torch.autograd.grad(loss, params)
    native = {key: g.numpy() for key, g in zip(names, grads, strict=True)}
    return loss.item(), canonical_gradients(model.spec, table(model.spec), native)


class Trainer:
    """``optimizer`` as ``torch.optim.SGD`` or ``torch.optim.AdamW``, stepping ``model`` in place."""

    def __init__(self, model: nn.Module, optimizer: OptimizerSpec, variant: str | None = None) -> None:
        check_train_variant(name, model.spec, optimizer, variant)
        self.model, self.spec, self.steps = model, optimizer, 0
        params = list(model.parameters())
        if optimizer.kind == "sgd":
            self.optimizer = torch.optim.SGD(
                params,
                lr=optimizer.lr(0),
                momentum=optimizer.momentum,
                dampening=optimizer.dampening,
                nesterov=optimizer.nesterov,
                weight_decay=optimizer.weight_decay,
            )
        else:
            self.optimizer = torch.optim.AdamW(
                params,
                lr=optimizer.lr(0),
                betas=optimizer.betas,
                eps=optimizer.eps,
                weight_decay=optimizer.weight_decay,
            )

    def step(self, x_nchw: np.ndarray, labels: np.ndarray) -> tuple[float, Weights]:
        """One step on a batch: (its loss, the gradients of the loss it applied, canonical; weight decay aside)."""
        x = check_input(self.model.spec, x_nchw, model_dtype(self.model))
        for group in self.optimizer.param_groups:
            group["lr"] = self.spec.lr(self.steps)
        self.optimizer.zero_grad()
        with _mode(self.model, True):
            loss = F.cross_entropy(self.model(torch.from_numpy(x)), torch.from_numpy(labels))
            loss.backward()
        native = {key: p.grad.numpy().copy() for key, p in self.model.named_parameters()}
        self.optimizer.step()
        self.steps += 1
        return loss.item(), canonical_gradients(self.model.spec, table(self.model.spec), native)


def _numpy(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {key: t.numpy() for key, t in tensors.items()}
