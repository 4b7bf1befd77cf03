"""Architectures as data, one module per family, and the registry of named models.

A spec is a frozen, framework-neutral description of a network: its op graph
(``parity.specs.graph``), from which its layers, canonical weight names, activation
points, summary groups and the numpy reference are all derived. Every backend builds
its native model from a spec, so two frameworks that build the same spec agree on every
name without talking to each other.
"""

from parity.specs.anynet import (
    AnyNet,
    ResNeXtBlock,
    Stage,
    block_path,
    d2l_block_arguments,
    d2l_stage_bug_block,
    d2l_stage_bug_blocks,
    d2l_stage_bug_layers,
    d2l_stage_bug_problem,
    regnetx32,
    same_padding_in_blocks_problem,
)
from parity.specs.classic import VGG, AlexNet, BNLeNet, LeNet, NiN, d2l_bnlenet_padding_problem, d2l_nin_pool_problem
from parity.specs.densenet import DenseNet, d2l_densenet_channels_problem
from parity.specs.fully_conv import FullyConvolutional, conv_head_problem, dense_as_conv
from parity.specs.graph import (
    INPUT,
    OUTPUT,
    Architecture,
    BatchNorm,
    Block,
    BookTab,
    Conv,
    Dense,
    GraphBuilder,
    Layer,
    Node,
    ShapeError,
    conv_output_size,
    infer_shapes,
    spatial_size_problem,
)
from parity.specs.inception import GoogLeNet, Inception, InceptionA, InceptionNet
from parity.specs.registry import SPECS, get_spec
from parity.specs.regnet_family import regnetx
from parity.specs.resnet import Residual, ResidualBlock, ResidualNet, ResNet
from parity.specs.torchvision_nets import TorchvisionAlexNet, TorchvisionResNet, TorchvisionVGG

Spec = Architecture  # every spec is an Architecture

__all__ = [
    "VGG",
    "AlexNet",
    "BNLeNet",
    "DenseNet",
    "FullyConvolutional",
    "TorchvisionAlexNet",
    "TorchvisionResNet",
    "TorchvisionVGG",
    "conv_head_problem",
    "dense_as_conv",
    "LeNet",
    "Residual",
    "ResidualBlock",
    "ResidualNet",
    "ResNet",
    "INPUT",
    "OUTPUT",
    "SPECS",
    "AnyNet",
    "Architecture",
    "BatchNorm",
    "Block",
    "BookTab",
    "Conv",
    "Dense",
    "GoogLeNet",
    "GraphBuilder",
    "Inception",
    "InceptionA",
    "InceptionNet",
    "Layer",
    "NiN",
    "Node",
    "ResNeXtBlock",
    "ShapeError",
    "Spec",
    "Stage",
    "block_path",
    "conv_output_size",
    "d2l_block_arguments",
    "d2l_stage_bug_block",
    "d2l_stage_bug_blocks",
    "d2l_stage_bug_layers",
    "d2l_bnlenet_padding_problem",
    "d2l_densenet_channels_problem",
    "d2l_nin_pool_problem",
    "d2l_stage_bug_problem",
    "same_padding_in_blocks_problem",
    "get_spec",
    "infer_shapes",
    "regnetx",
    "regnetx32",
    "spatial_size_problem",
]
