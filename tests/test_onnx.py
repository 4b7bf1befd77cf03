"""ONNX as a fifth runtime (``parity.onnx_runtime``): the torch model exported by ``torch.onnx.export`` and run
by onnxruntime on the CPU, as a column of ``parity compare`` and a target of ``parity convert``.

onnxruntime's CPU convolutions run float32 only, so the bound is the README's float32 one: max |diff| /
max |logit| <= 2e-5, about 20x the expected rounding of a differently ordered float32 sum.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from parity import cli, get_backend, get_spec
from parity.weights import save_weights

onnxruntime = pytest.importorskip("onnxruntime", reason="onnx is not installed: pip install -e '.[onnx]'")

SPEC = get_spec("lenet")


def test_compare_shows_onnx_as_a_column(capsys):
    code = cli.main(["compare", "lenet", "--frameworks", "torch,onnx", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    pairs = {(t["src"], t["dst"]) for t in report["transfers"]}
    assert pairs == {("torch", "onnx"), ("onnx", "torch")} and report["passed"]


def test_convert_to_onnx_writes_a_file_onnxruntime_runs(capsys, tmp_path):
    torch_backend = get_backend("torch")
    model = torch_backend.build(SPEC, seed=2)
    save_weights(torch_backend.export_weights(model), tmp_path / "lenet.safetensors")
    argv = ["convert", "--from", "torch:lenet", "--weights", str(tmp_path / "lenet.safetensors"), "--to", "onnx"]
    code = cli.main([*argv, "--out", str(tmp_path / "lenet.onnx")])
    assert code == 0, capsys.readouterr()
    session = onnxruntime.InferenceSession(str(tmp_path / "lenet.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype("float32")
    expected = torch_backend.forward(model, x)
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert np.abs(got - expected).max() / np.abs(expected).max() <= 2e-5


def test_onnx_refuses_float64_in_one_line(capsys):
    code = cli.main(["compare", "lenet", "--frameworks", "torch,onnx", "--dtype", "float64"])
    assert code == 2 and "onnx runs eval mode in float32 only" in capsys.readouterr().err
