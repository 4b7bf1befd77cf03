"""d2l's LeNet, BNLeNet, AlexNet, VGG, NiN, GoogLeNet and Inception block, ResNet and Residual
block, DenseNet, AnyNet/RegNetX and ResNeXt block, and the tutorials' InceptionA and residual MNIST
nets, in Keras 3 on the TensorFlow backend.

Importing this package pins ``KERAS_BACKEND=tensorflow`` before Keras is
imported, whatever the user's environment says: the models and the backend use
TensorFlow directly (``tf.function``). If Keras was already imported with
another backend, importing this package raises ImportError instead of running
on the wrong one. TensorFlow's C++ log level defaults to warnings and errors
only, unless ``TF_CPP_MIN_LOG_LEVEL`` is already set.
"""

import importlib.util
import os
import sys


def _load_torch_compiler_first() -> None:
    """Where PyTorch is installed, load its compiler stack (``torch._dynamo``, which loads triton's native
    library) before TensorFlow: first loaded after TensorFlow, it kills the process (a segfault), and
    torchvision, ``torch.onnx`` and ``torch.optim`` load it on first use."""
    if "tensorflow" not in sys.modules and importlib.util.find_spec("torch") is not None:
        import torch._dynamo  # noqa: F401


def _require_tensorflow_keras() -> None:
    if "keras" not in sys.modules:
        return
    active = sys.modules["keras"].config.backend()
    if active != "tensorflow":
        raise ImportError(
            f"impl_tf needs Keras on the TensorFlow backend, but keras was already imported with the "
            f"{active!r} backend; import impl_tf before keras, or set KERAS_BACKEND=tensorflow"
        )


_load_torch_compiler_first()
_require_tensorflow_keras()
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from impl_tf.anynet import AnyNet, RegNetX32, ResNeXtBlock  # noqa: E402  (Keras after the pin)
from impl_tf.classic import VGG, AlexNet, BNLeNet, LeNet, NiN  # noqa: E402
from impl_tf.densenet import DenseNet  # noqa: E402
from impl_tf.inception import GoogLeNet, Inception, InceptionA, InceptionNet  # noqa: E402
from impl_tf.resnet import Residual, ResidualBlock, ResidualNet, ResNet, ResNet18  # noqa: E402

__all__ = [
    "VGG",
    "AlexNet",
    "AnyNet",
    "BNLeNet",
    "DenseNet",
    "GoogLeNet",
    "Inception",
    "InceptionA",
    "InceptionNet",
    "LeNet",
    "NiN",
    "RegNetX32",
    "ResNeXtBlock",
    "ResNet",
    "ResNet18",
    "Residual",
    "ResidualBlock",
    "ResidualNet",
]
