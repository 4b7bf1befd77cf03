"""The dense-evaluation commands: ``parity dense-eval`` and ``parity convert --dense-eval``.

d2l's VGG with narrow blocks and head at 64x96 (``vgg_2x3``, registered here) has a 2x3 last map, so fc6
becomes a 2x3 conv and a wrong flatten permutation in an NHWC framework cannot pass by symmetry; at 96x160
its score map is 2x3. The expected score maps come from ``parity.reference``, the numpy forward of the spec's
graph. Float64 throughout: 1e-9 absolute, far above float64 rounding of these scores (|score| < 1) and far
below a wrong flatten permutation (an H/W swap in fc6 moves them by 0.076).
"""

from __future__ import annotations

import numpy as np
import pytest

from parity import cli, dense_to_conv, get_backend, reference
from parity.dense_eval import class_scores
from parity.specs import SPECS, VGG
from parity.weights import load_weights, save_weights, schema

NAME = "vgg_2x3"
SPEC = VGG(name=NAME, arch=((1, 8), (1, 16), (1, 16), (1, 32), (1, 32)), input_size=(64, 96), head_width=64)
LARGER = (96, 160)
BOUND = 1e-9


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    monkeypatch.setitem(SPECS, NAME, lambda: SPEC)


@pytest.fixture(scope="module")
def dense_file(tmp_path_factory):
    """Random canonical float64 weights of ``SPEC`` (the dense net; weights of variance 1 / fan-in, biases of
    0.1, so activations stay O(1)) and their file."""
    rng = np.random.default_rng(7)
    weights = {
        name: rng.standard_normal(p.shape) * (0.1 if p.leaf == "bias" else 1 / np.sqrt(np.prod(p.shape[1:])))
        for name, p in schema(SPEC).items()
    }
    path = tmp_path_factory.mktemp("dense_eval") / "vgg_2x3.safetensors"
    save_weights(weights, path)
    return weights, path


@pytest.fixture(scope="module")
def expected(dense_file):
    """The numpy reference's score map of the commands' input at ``LARGER`` (seed 0, batch 1)."""
    conv_spec, conv_weights = dense_to_conv(SPEC, dense_file[0])
    x = np.random.default_rng(0).standard_normal((1, SPEC.in_channels, *LARGER))
    return x, reference.forward(conv_spec, conv_weights, x)


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def row(out: str, label: str) -> str:
    return next(line for line in out.splitlines() if label in line)


def dense_eval(capsys, path, *options):
    size = ",".join(map(str, LARGER))
    return run(capsys, "dense-eval", NAME, "--weights", str(path), "--input-size", size, *options)


def assert_top_classes_are_the_references(out, score_map, frameworks):
    scores = class_scores(score_map)[0]
    assert row(out, "score map").count(str(score_map.shape)) == frameworks, out
    for rank, c in enumerate(np.argsort(-scores)[:3], start=1):
        assert row(out, f"top {rank} (class: mean)").count(f"{c}: {scores[c]:.5g}") == frameworks, out


def test_dense_eval_cli_prints_the_score_map_shape_and_top_classes_side_by_side(capsys, dense_file, expected):
    code, out, _ = dense_eval(capsys, dense_file[1], "--frameworks", "torch,jax", "--top", "3")
    assert code == 0 and "PASS: the frameworks agree with torch's score map (need max |diff| <= 1e-09)" in out, out
    _, score_map = expected
    assert score_map.shape == (1, 10, 2, 3)
    assert_top_classes_are_the_references(out, score_map, frameworks=2)
    assert "top 4" not in out


def test_dense_eval_cli_exits_1_naming_the_framework_that_diverges(capsys, monkeypatch, dense_file):
    jax_backend = get_backend("jax")
    forward = jax_backend.forward
    bump = np.zeros((1, 10, 2, 3))
    bump[0, 3, 1, 2] = 1e-6  # one score at one position, beyond 1e-9
    monkeypatch.setattr(jax_backend, "forward", lambda model, x, train=False: forward(model, x) + bump)
    code, out, _ = dense_eval(capsys, dense_file[1], "--frameworks", "torch,jax")
    assert code == 1 and "FAIL: jax diverge from torch's score map" in out, out
    assert "1.000e-06" in row(out, "max |diff| vs torch"), out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["nin"], "MODEL: nin has no dense head after one flatten"),
        ([NAME, "--input-size", "32,96"], "--input-size: vgg_2x3_conv cannot take 32x96 inputs"),
        ([NAME, "--input-size", "96"], "--input-size: expected 2 positive integers separated by commas, got '96'"),
        ([NAME, "--top", "11"], "--top: expected 1 to 10 (the classes of vgg_2x3), got 11"),
        ([NAME, "--frameworks", "torch"], "--frameworks: a dense evaluation compares at least two frameworks"),
        (["alexnet", "--input-size", "224,224"], "--weights {path}: weights do not fit alexnet: missing key 'conv1"),
        (["tv_alexnet", "--input-size", "224,224"], "--weights {path}: weights do not fit tv_alexnet: missing key"),
        ([NAME, "--weights", "vgg.pth"], "--weights: expected a .safetensors file for vgg_2x3, got 'vgg.pth'"),
        ([NAME, "--weights", "nope.safetensors"], "--weights: no such file 'nope.safetensors'"),
    ],
    ids=["no-head", "too-small", "bad-size", "top", "one-framework", "other-model", "tv-model", "suffix", "missing"],
)
def test_dense_eval_cli_usage_errors_exit_2_in_one_line(capsys, dense_file, argv, message):
    path = str(dense_file[1])
    options = {"--weights": path, "--input-size": ",".join(map(str, LARGER)), "--frameworks": "torch,jax"}
    given = dict(zip(argv[1::2], argv[2::2], strict=True))
    defaults = [x for k, v in options.items() if k not in given for x in (k, v)]
    code, out, err = run(capsys, "dense-eval", *argv, *defaults)
    assert code == 2 and out == "", out
    assert err.count("\n") == 1 and message.format(path=path) in err and "Traceback" not in err, err


def convert(capsys, dense_file, to, out, *options):
    argv = ["convert", "--from", f"torch:{NAME}", "--weights", str(dense_file[1]), "--to", to, "--out", str(out)]
    return run(capsys, *argv, "--dense-eval", *options)


def test_dense_eval_convert_writes_the_fully_convolutional_model_in_the_frameworks_format(
    capsys, tmp_path, dense_file, expected
):
    import torch

    code, out, _ = convert(capsys, dense_file, "torch", tmp_path / "vgg_conv.pth")
    assert code == 0 and "vgg_2x3_conv" in out, out
    assert "PASS: logits at (1, 1, 64, 96), torch vs torch's 1x1 score map" in out, out
    torch_backend, conv_spec = get_backend("torch"), dense_to_conv(SPEC, dense_file[0])[0]
    model = torch_backend.build(conv_spec, seed=5, dtype="float64")
    state_dict = torch.load(tmp_path / "vgg_conv.pth", weights_only=True)
    assert (64, 32, 2, 3) in {tuple(value.shape) for value in state_dict.values()}  # fc6 as a 2x3 conv
    model.load_state_dict(state_dict, strict=True)  # PyTorch's own loader
    x, score_map = expected
    with torch.no_grad():
        assert np.abs(model(torch.from_numpy(x)).numpy() - score_map).max() <= BOUND


def test_dense_eval_convert_canonical_holds_conv_kernels_that_dense_eval_reads(capsys, tmp_path, dense_file, expected):
    code, out, _ = convert(capsys, dense_file, "jax", tmp_path / "conv.safetensors", "--format", "canonical")
    assert code == 0 and "PASS" in out, out
    written, dense = load_weights(tmp_path / "conv.safetensors"), dense_file[0]
    assert written["fc6.weight"].shape == (64, 32, 2, 3) and written["fc8.weight"].shape == (10, 64, 1, 1)
    assert written["fc6.weight"][5, 7, 1, 2] == dense["fc6.weight"][5, 7 * 6 + 1 * 3 + 2]  # (C, h, w) order
    code, out, _ = dense_eval(capsys, tmp_path / "conv.safetensors", "--frameworks", "torch,jax")
    assert code == 0 and "PASS" in out, out
    assert_top_classes_are_the_references(out, expected[1], frameworks=2)


def test_dense_eval_convert_writes_nothing_when_the_score_map_is_not_the_logits(
    capsys, monkeypatch, tmp_path, dense_file
):
    jax_backend = get_backend("jax")
    forward = jax_backend.forward
    monkeypatch.setattr(jax_backend, "forward", lambda model, x, train=False: forward(model, x) + 1e-6)
    code, out, _ = convert(capsys, dense_file, "jax", tmp_path / "vgg_conv.msgpack")
    assert code == 1 and "FAIL" in out and "not written" in out, out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "source, to, options, message",
    [
        ("torch:nin", "jax", [], "--dense-eval: nin has no dense head after one flatten"),
        ("torch:tv_vgg11", "torchvision", [], "--dense-eval: writes the fully convolutional model for one of torch"),
        ("torch:tv_vgg11", "onnx", [], "onnx has none (--to onnx)"),
        (
            f"torch:{NAME}",
            "jax",
            ["--check-size", "96,160"],
            "--check-size: with --dense-eval the check runs at vgg_2x3's input size 64,96, where the score map is 1x1",
        ),
    ],
    ids=["no-head", "torchvision", "onnx", "check-size"],
)
def test_dense_eval_convert_usage_errors_exit_2_in_one_line(capsys, tmp_path, dense_file, source, to, options, message):
    suffix = {"jax": ".msgpack", "onnx": ".onnx"}.get(to, ".safetensors")
    argv = ["convert", "--from", source, "--weights", str(dense_file[1]), "--to", to]
    code, out, err = run(capsys, *argv, "--out", str(tmp_path / f"out{suffix}"), "--dense-eval", *options)
    assert code == 2 and out == "", out
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []


def test_dense_eval_cli_names_what_a_torchvision_state_dict_lacks(capsys, tmp_path):
    import torch

    path = tmp_path / "alexnet.pth"
    torch.save({"features.0.weight": torch.zeros(64, 3, 11, 11)}, path)
    argv = ["dense-eval", "tv_alexnet", "--weights", str(path), "--input-size", "224,224", "--frameworks", "torch,jax"]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert f"--weights {path}: state_dict does not fit tv_alexnet (15 problems): missing key 'features.0.bias'" in err


@pytest.mark.slow
def test_dense_eval_cli_reads_a_torchvision_checkpoint(capsys, tmp_path):
    """torchvision's own AlexNet state_dict (.pth) at 256x288: fc6 becomes a 6x6 conv over a 7x8 map, a 2x3 score
    map. The reference slides torchvision's own classifier over the 6x6 windows of its own features; the top
    classes must be its: float32 moves scores by ~1e-6 of the largest, and the top 3 are >= 7e-3 of it apart."""
    import torch
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.alexnet(weights=None).eval()
    torch.save(net.state_dict(), tmp_path / "alexnet.pth")
    size = "256,288"
    code, out, _ = run(
        capsys, "dense-eval", "tv_alexnet", "--weights", str(tmp_path / "alexnet.pth"), "--input-size", size,
        "--frameworks", "torch,mxnet",
    )  # fmt: skip
    assert code == 0 and "PASS" in out and row(out, "score map").count("(1, 1000, 2, 3)") == 2, out
    x = np.random.default_rng(0).standard_normal((1, 3, 256, 288)).astype("float32")
    with torch.no_grad():
        features = net.features(torch.from_numpy(x))  # (1, 256, 7, 8): slide the dense head over its 6x6 windows
        windows = [features[..., i : i + 6, j : j + 6].flatten(1) for i in range(2) for j in range(3)]
        scores = torch.stack([net.classifier(w) for w in windows]).mean(0)[0].numpy()
    for rank, c in enumerate(np.argsort(-scores)[:3], start=1):
        assert row(out, f"top {rank} (class: mean)").count(f"{c}: ") == 2, out
