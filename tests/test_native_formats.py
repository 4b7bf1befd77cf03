"""Each framework's own checkpoint file (``parity.native``): written from canonical weights, read back by the
framework's OWN loading API into a freshly built model, whose logits must equal torch's; and read by
``parity convert``, with bad files refused in one line (exit 2) and nothing written.

float64 throughout: the files hold the weights bit for bit, so the logits differ by rounding alone,
and the README's float64 bound (1e-9, ~1e-12 expected through ~35 layers) applies.
"""

from __future__ import annotations

import numpy as np
import pytest

from parity import cli, get_backend, get_spec, native
from parity.weights import randomize_batchnorm, randomize_biases, save_weights
from support import randn

SPEC = get_spec(
    "bnlenet"
)  # convs, BatchNorm on conv and dense outputs, a flatten into a dense layer (permuted in NHWC)
BOUND = 1e-9


@pytest.fixture(scope="module")
def weights():
    torch_backend = get_backend("torch")
    model = torch_backend.build(SPEC, seed=3, dtype="float64")
    return randomize_biases(randomize_batchnorm(torch_backend.export_weights(model), 1), 2)


@pytest.fixture(scope="module")
def expected(weights):
    x = randn((2, 1, 28, 28), "float64")
    torch_backend = get_backend("torch")
    model = torch_backend.build(SPEC, seed=0, dtype="float64")
    torch_backend.load_weights(model, weights)
    return x, torch_backend.forward(model, x)


def load_torch_safetensors(model, path):
    from safetensors.torch import load_file

    model.load_state_dict(load_file(path), strict=True)


def load_torch_pth(model, path):
    import torch

    model.load_state_dict(torch.load(path, weights_only=True), strict=True)


def load_flax(model, path):
    from flax import serialization

    model.variables = serialization.from_bytes(model.variables, path.read_bytes())


OWN_LOADERS = {
    ("torch", ".safetensors"): load_torch_safetensors,
    ("torch", ".pth"): load_torch_pth,
    ("jax", ".msgpack"): load_flax,
    ("tf", ".weights.h5"): lambda model, path: model.load_weights(str(path)),
    ("mxnet", ".params"): lambda model, path: model.load_parameters(str(path)),
}


@pytest.mark.parametrize("fw, suffix", list(OWN_LOADERS), ids=lambda v: v.strip("."))
def test_a_native_file_loads_with_the_frameworks_own_api(tmp_path, weights, expected, fw, suffix):
    path = tmp_path / f"model{suffix}"
    native.save_weights(fw, SPEC, weights, path)
    backend = get_backend(fw)
    fresh = backend.build(SPEC, seed=7, dtype="float64")
    OWN_LOADERS[fw, suffix](fresh, path)
    x, logits = expected
    assert np.abs(backend.forward(fresh, x) - logits).max() <= BOUND
    back = native.load(fw, SPEC, path)  # and parity reads it back bit for bit
    assert list(back) == list(weights) and all(back[k].tobytes() == v.tobytes() for k, v in weights.items())


def convert(capsys, *argv):
    code = cli.main(["convert", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_convert_writes_native_by_default_and_reads_it_back(capsys, tmp_path, weights):
    save_weights(weights, tmp_path / "canonical.safetensors")
    argv = ["--from", "torch:bnlenet", "--weights", str(tmp_path / "canonical.safetensors"), "--to", "jax"]
    code, out, _ = convert(
        capsys,
        *argv,
        "--out",
        str(tmp_path / "jax.msgpack"),
    )
    assert code == 0 and "PASS" in out, out
    argv = ["--from", "jax:bnlenet", "--weights", str(tmp_path / "jax.msgpack"), "--to", "mxnet"]
    code, out, _ = convert(
        capsys,
        *argv,
        "--out",
        str(tmp_path / "net.params"),
    )
    assert code == 0 and "PASS" in out, out
    back = native.load("mxnet", SPEC, tmp_path / "net.params")
    assert all(back[k].tobytes() == v.tobytes() for k, v in weights.items())


def truncated(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


@pytest.mark.parametrize(
    "fw, suffix, damage, read_as, message",
    [
        ("torch", ".pth", truncated, "torch:bnlenet", "torch.load(weights_only=True) cannot read it"),
        ("jax", ".msgpack", truncated, "jax:bnlenet", "not a readable Flax variables msgpack"),
        ("mxnet", ".params", truncated, "mxnet:bnlenet", "not a readable Gluon .params file"),
        ("tf", ".weights.h5", truncated, "tf:bnlenet", "not a readable Keras .weights.h5 file (Unable to"),
        ("torch", ".safetensors", None, "torch:lenet", "expected a PyTorch state_dict of lenet"),
        ("jax", ".msgpack", None, "jax:lenet", "expected a Flax variables msgpack of lenet"),
        ("mxnet", ".params", "renamed", "mxnet:bnlenet", "not a readable Gluon .params file"),
    ],
    ids=[
        "torch-truncated",
        "jax-truncated",
        "mxnet-truncated",
        "tf-truncated",
        "torch-wrong-model",
        "jax-wrong-model",
        "wrong-fw",
    ],
)
def test_a_bad_native_file_exits_2_in_one_line_and_writes_nothing(
    capsys, tmp_path, weights, fw, suffix, damage, read_as, message
):
    path = tmp_path / f"model{suffix}"
    if damage == "renamed":  # a Flax msgpack under Gluon's suffix
        native.save_weights("jax", SPEC, weights, tmp_path / "model.msgpack")
        (tmp_path / "model.msgpack").rename(path)
    else:
        native.save_weights(fw, SPEC, weights, path)
        if damage:
            damage(path)
    out = tmp_path / "out.safetensors"
    code, stdout, err = convert(capsys, "--from", read_as, "--weights", str(path), "--to", "torch", "--out", str(out))
    assert code == 2 and stdout == "" and err.count("\n") == 1, err
    assert err.startswith(f"parity: error: --weights {path}: ") and message in err, err
    assert not out.exists() and list(tmp_path.iterdir()) == [path]


def test_a_native_target_needs_its_frameworks_suffix(capsys, tmp_path, weights):
    save_weights(weights, tmp_path / "canonical.safetensors")
    argv = ["--from", "torch:bnlenet", "--weights", str(tmp_path / "canonical.safetensors"), "--to", "tf"]
    code, _, err = convert(capsys, *argv, "--out", str(tmp_path / "tf.safetensors"))
    assert code == 2 and "--out: a native tf file is .weights.h5 (--format canonical writes" in err, err
    code, out, _ = convert(
        capsys, *argv, "--out", str(tmp_path / "c.safetensors"), "--format", "canonical", "--no-check"
    )
    assert code == 0 and (tmp_path / "c.safetensors").is_file(), out


@pytest.mark.parametrize("chunk_bytes", [2**30, 64], ids=["whole-arrays", "chunked"])
def test_the_flax_file_is_flaxs_own_to_bytes(tmp_path, monkeypatch, weights, chunk_bytes):
    """Written one array at a time, the file holds the bytes of ``flax.serialization.to_bytes``, arrays over
    Flax's chunk size in its chunked form included (a 64-byte chunk size makes every array over 8 float64s
    chunked)."""
    serialization = pytest.importorskip("flax.serialization")
    monkeypatch.setattr(serialization, "MAX_CHUNK_SIZE", chunk_bytes)
    backend = get_backend("jax")
    model = backend.build(SPEC, dtype="float64")
    backend.load_weights(model, weights)
    native.FORMATS["jax"].save(model, str(tmp_path / "model.msgpack"))
    assert (tmp_path / "model.msgpack").read_bytes() == serialization.to_bytes(model.variables)
