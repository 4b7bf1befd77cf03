"""``parity.port_check`` on code the suite did not write: d2l's Residual block in each of the book's
tabs, Flax's own ResNet-18 against torchvision's, and a hand-written Keras port with one planted
pitfall per case. Every verdict is checked against what is independently known of that code: the
suite's record of d2l's tabs (``spec.book_tabs()``), and the pitfall each case plants."""

from __future__ import annotations

import numpy as np
import pytest

from parity.port_check import AmbiguousMatch, port_check
from parity.specs import ResNet
from support import randn

torch = pytest.importorskip("torch")
# before TensorFlow and MXNet: imported after them, torchvision's import (of triton) segfaults
torchvision = pytest.importorskip("torchvision")
keras = pytest.importorskip("keras")
jax = pytest.importorskip("jax")

from ports import small_net  # noqa: E402


def nhwc(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 2, 3, 1)


def causes(check) -> dict[str | None, tuple[str, ...]]:
    return {c.pitfall.name if c.pitfall else None: c.points for c in check.divergence.causes}


@pytest.fixture(scope="module")
def x16() -> np.ndarray:
    return randn((2, 3, 16, 16))


def test_keras_port_agrees_with_flatten_permuted(x16):
    check = port_check(small_net.small_net(), small_net.keras_port(), x16)
    assert check.agree, check.divergence.points
    fc = next(p for p in check.pairs if p.a.name == "fc")
    assert (fc.flatten_from, fc.order_a, fc.order_b) == ((3, 4, 4), "CHW", "HWC")
    assert [p.how for p in check.pairs] == ["order"] * 5
    # B now computes A's function: the logits agree under the float32 tolerance (relative 2e-5)
    out = np.asarray(check.model_b(nhwc(x16), training=False))
    ref = small_net.small_net()(torch.from_numpy(x16)).detach().numpy()
    assert np.abs(out - ref).max() <= 2e-5 * np.abs(ref).max()


@pytest.mark.parametrize(
    ("pitfall", "first", "named"),
    [
        ("same_padding", "conv1", "same_padding"),
        ("bn_epsilon", "bn1", "keras_bn_epsilon"),
        ("pool_padding", "pool1", "avgpool_excludes_padding"),
        ("flatten_order", "fc", "unpermuted_flatten"),
        ("transposed_kernel", "conv1", "untransposed_kernel"),
    ],
)
def test_keras_port_pitfall_named(x16, pitfall, first, named):
    net = small_net.small_net()
    in_model = pitfall in ("same_padding", "bn_epsilon", "pool_padding")
    port = small_net.keras_port(pitfall if in_model else None)
    if not in_model:  # the port's own converter plants it: compare B as it is
        small_net.convert(net, port, pitfall)
    check = port_check(net, port, x16, load=in_model)
    assert not check.agree
    assert check.divergence.first == first
    assert check.divergence.hint.pitfall.name == named
    assert list(causes(check)) == [named]


def test_d2l_tabs_against_pytorch_tab():
    """The book's TF and JAX Residual blocks diverge exactly by the pitfalls the suite records for those tabs."""
    from flax import linen  # noqa: F401

    from ports import d2l_residual_jax, d2l_residual_tf, d2l_residual_torch

    x = randn((2, 3, 8, 8))
    torch.manual_seed(0)
    a = d2l_residual_torch.Residual(6, use_1x1conv=True, strides=2)
    a(torch.from_numpy(x))
    b_tf = d2l_residual_tf.Residual(6, use_1x1conv=True, strides=2)
    b_tf(nhwc(x))
    jax_block = d2l_residual_jax.Residual(6, use_1x1conv=True, strides=(2, 2), training=False)
    b_jax = (jax_block, jax_block.init(jax.random.key(0), nhwc(x)))
    tabs = ResNet().book_tabs()
    for framework, port in (("tf", b_tf), ("jax", b_jax)):
        check = port_check(a, port, x)
        assert [p.how for p in check.pairs] == ["order"] * 5
        assert check.divergence.first == "conv1"
        assert set(causes(check)) == set(tabs[framework].pitfalls), framework


def test_d2l_gluon_tab_agrees():
    mxnet_tab = pytest.importorskip("ports.d2l_residual_mxnet")
    import mxnet as mx

    from ports import d2l_residual_torch

    x = randn((2, 3, 8, 8))
    torch.manual_seed(0)
    a = d2l_residual_torch.Residual(6, use_1x1conv=True, strides=2)
    a(torch.from_numpy(x))
    with mxnet_tab.numpy_mode():
        b = mxnet_tab.Residual(6, use_1x1conv=True, strides=2)
        b.initialize()
        b(mx.np.array(x))
        check = port_check(a, b, x)
        assert check.agree and len(check.pairs) == 5
        # B holds A's tensors: its output is A's
        assert np.abs(b(mx.np.array(x)).asnumpy() - a(torch.from_numpy(x)).detach().numpy()).max() <= 2e-5 * 10


def test_torchvision_resnet18_against_flax_resnet18():
    """Flax's example ResNet-18 takes torchvision's weights by order and shape (41 layers, no name given), and
    differs where its max-pool and stride-2 convs pad 'SAME'."""
    from ports.flax_resnet import ResNet18

    x = randn((2, 3, 32, 32))
    module = ResNet18(num_classes=10)
    model_b = (module, module.init(jax.random.key(0), nhwc(x), train=False), {"train": False})
    check = port_check(torchvision.models.resnet18(num_classes=10), model_b, x)
    assert len(check.pairs) == 41 and not check.mismatches
    assert check.divergence.first == "maxpool"
    assert causes(check) == {
        "same_padding": ("maxpool", "layer2.0.conv1", "layer3.0.conv1", "layer4.0.conv1"),
    }


def test_structure_that_does_not_line_up_is_reported_and_nothing_loaded(x16):
    port = small_net.keras_port()
    port.get_layer("fc").kernel.assign(np.zeros((48, 10), "float32"))
    net = small_net.small_net()
    net.conv2 = torch.nn.Conv2d(3, 4, 3, padding=1)  # B's conv2 has 3 output channels
    net.bn2 = torch.nn.BatchNorm2d(4)
    net.fc = torch.nn.Linear(64, 10)
    net.eval()
    check = port_check(net, port, x16)
    assert not check.agree and check.divergence.load_error
    assert {m.a.name for m in check.mismatches if m.a} == {"conv2", "bn2", "fc"}
    assert not np.asarray(port.get_layer("fc").kernel).any()  # nothing loaded


class Branches(torch.nn.Module):
    """Two alike convs and a third, all reading the input; ``small_first`` runs the third first."""

    def __init__(self, small_first: bool = False):
        super().__init__()
        self.small_first = small_first
        self.left, self.right = torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(3, 4, 3)
        self.small = torch.nn.Conv2d(3, 2, 3)

    def forward(self, x):
        small = self.small(x) if self.small_first else None
        y = torch.cat([self.left(x), self.right(x)], 1)
        return torch.cat([y, self.small(x) if small is None else small], 1)


def test_ambiguous_match_is_refused_with_candidates():
    """Once B's order differs, two alike convs could each take A's 'left': refused, never guessed."""
    x = randn((1, 3, 8, 8))
    with pytest.raises(AmbiguousMatch, match="'left'.*left, right"):
        port_check(Branches(), Branches(small_first=True), x)
    check = port_check(Branches(), Branches(small_first=True), x, name_map=[("^(.*)$", r"\1")])
    assert [(p.a.name, p.b.name) for p in check.pairs] == [("left", "left"), ("right", "right"), ("small", "small")]
    assert check.agree


def test_cli_exit_codes_screen_and_html(tmp_path, capsys):
    from parity.cli import main

    args = ["port-check", "--a", "ports.small_net:small_net", "--input-size", "16,16"]
    out = tmp_path / "port.html"
    assert main([*args, "--b", "ports.small_net:keras_port", "--html", str(out)]) == 0
    assert "no divergence" in capsys.readouterr().out and "PASS" in out.read_text()
    assert main([*args, "--b", "ports.small_net:keras_port_bn_epsilon"]) == 1
    screen = " ".join(capsys.readouterr().out.split())  # rich wraps long cells
    assert "hint at bn1" in screen and "OIHW->HWIO" in screen and "(out,in)->(in,out)" in screen
    assert main([*args, "--b", "ports.small_net:no_such_factory"]) == 2
    assert "no_such_factory" in capsys.readouterr().err
