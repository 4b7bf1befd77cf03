"""A small PyTorch net and a hand-written Keras port of it, the kind a person writes when porting:
each ``pitfall`` plants one classic mistake, in the model or in the port's own weight converter."""

from __future__ import annotations

import keras
import numpy as np
import torch
from torch import nn

PITFALLS = ("same_padding", "bn_epsilon", "pool_padding", "flatten_order", "transposed_kernel")


class SmallNet(nn.Module):
    """conv (stride 2) -> BN -> ReLU -> padded average pool -> conv -> BN -> ReLU -> max-pool -> flatten -> linear.
    Three channels throughout, so that a kernel with swapped input and output axes still fits."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 3, kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(3)
        self.pool1 = nn.AvgPool2d(kernel_size=3, stride=1, padding=1)
        self.conv2 = nn.Conv2d(3, 3, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(3)
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(3 * 4 * 4, num_classes)

    def forward(self, x):  # x: (N, 3, 16, 16)
        x = self.pool1(torch.relu(self.bn1(self.conv1(x))))  # (N, 3, 8, 8)
        x = self.pool2(torch.relu(self.bn2(self.conv2(x))))  # (N, 3, 4, 4)
        return self.fc(self.flatten(x))


def small_net(seed: int = 0) -> SmallNet:
    """The reference, with BatchNorm statistics and affine parameters away from their 0/1 start."""
    torch.manual_seed(seed)
    net = SmallNet()
    with torch.no_grad():
        for bn in (net.bn1, net.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    return net.eval()


def keras_port(pitfall: str | None = None) -> keras.Model:
    """SmallNet in Keras, written by hand; ``pitfall`` in the model: "same_padding" (conv1 'same' at
    stride 2), "bn_epsilon" (BatchNormalization's default epsilon), "pool_padding" ('same' average pool)."""
    if pitfall not in (None, *PITFALLS):
        raise ValueError(f"pitfall: expected one of {PITFALLS}, got {pitfall!r}")
    eps = 1e-3 if pitfall == "bn_epsilon" else 1e-5
    layers = keras.layers
    conv1 = (
        [layers.Conv2D(3, 3, strides=2, padding="same", name="conv1")]
        if pitfall == "same_padding"
        else [layers.ZeroPadding2D(1, name="conv1_pad"), layers.Conv2D(3, 3, strides=2, name="conv1")]
    )
    pool1 = (
        [layers.AveragePooling2D(3, strides=1, padding="same", name="pool1")]
        if pitfall == "pool_padding"
        else [layers.ZeroPadding2D(1, name="pool1_pad"), layers.AveragePooling2D(3, strides=1, name="pool1")]
    )
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            *conv1,
            layers.BatchNormalization(epsilon=eps, name="bn1"),
            layers.ReLU(name="relu1"),
            *pool1,
            layers.ZeroPadding2D(1, name="conv2_pad"),
            layers.Conv2D(3, 3, name="conv2"),
            layers.BatchNormalization(epsilon=eps, name="bn2"),
            layers.ReLU(name="relu2"),
            layers.MaxPooling2D(2, name="pool2"),
            layers.Flatten(name="flatten"),
            layers.Dense(10, name="fc"),
        ],
        name="small_net",
    )
    return model


def convert(net: SmallNet, model: keras.Model, pitfall: str | None = None) -> keras.Model:
    """The port's own weight converter; ``pitfall``: "flatten_order" (fc's input axis left in (C, H, W)
    order) or "transposed_kernel" (conv kernels transposed (2, 3, 0, 1), not (2, 3, 1, 0))."""
    kernel_axes = (2, 3, 0, 1) if pitfall == "transposed_kernel" else (2, 3, 1, 0)
    state = {name: value.detach().numpy() for name, value in net.state_dict().items()}
    for name in ("conv1", "conv2"):
        model.get_layer(name).set_weights([state[f"{name}.weight"].transpose(kernel_axes), state[f"{name}.bias"]])
    for name in ("bn1", "bn2"):
        model.get_layer(name).set_weights(
            [state[f"{name}.{leaf}"] for leaf in ("weight", "bias", "running_mean", "running_var")]
        )
    weight = state["fc.weight"]  # (10, C*H*W) in (C, H, W) order
    if pitfall != "flatten_order":
        weight = weight.reshape(10, 3, 4, 4).transpose(0, 2, 3, 1).reshape(10, -1)  # Keras flattens (H, W, C)
    model.get_layer("fc").set_weights([np.ascontiguousarray(weight.T), state["fc.bias"]])
    return model


def keras_port_bn_epsilon() -> keras.Model:
    """A factory for ``parity port-check --b``: the port with Keras' default BatchNorm epsilon."""
    return keras_port("bn_epsilon")
