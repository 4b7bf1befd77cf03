"""torchvision's RegNetX checkpoints in every framework, and back (``pytest parity -k regnet``).

Nothing is downloaded: torchvision builds each model with random weights, and its
BatchNorm scales, shifts and running statistics are randomised away from 1/0/0/1 (a
dropped or swapped BN tensor would otherwise hide). Each backend loads that state_dict
through the canonical form and must give torchvision's own logits within
``parity.harness.TOLERANCE``; exporting it back must give a state_dict that
torchvision loads with ``strict=True``, bit for bit the one that went in.

By default each size up to 1.6GF runs once, in float64 or float32 alternately, in all
four frameworks; ``pytest -m slow`` runs the rest: those four in the other dtype and
3.2GF to 32GF in both. The cost of a case is building its models, not the input:
Flax compiles ``init`` and ``apply`` once per (model, dtype), ~10-20 s on 2 cores.
"""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from parity import cli
from parity import convert as conversion
from parity import torchvision_io as tvio
from parity.backends import FRAMEWORKS, get_backend
from parity.checks import Latest
from parity.harness import logit_diff, tolerance_text
from parity.weights import count_parameters, load_weights, randomize_batchnorm, save_weights

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

DEFAULT_CASES = {
    ("regnet_x_200mf", "float64"),
    ("regnet_x_400mf", "float32"),
    ("regnet_x_800mf", "float64"),
    ("regnet_x_1_6gf", "float32"),
}
DTYPES = ("float64", "float32")
# odd sizes: stride-2 convolutions see both paddings, and 1.6GF's last stage is still 2x2
INPUT_SHAPE = (2, 3, 33, 47)


def cases():
    """(model, dtype, framework), grouped by (model, dtype) so that one case's models are built once."""
    for model in tvio.MODELS:
        for dtype in DTYPES:
            marks = [] if (model, dtype) in DEFAULT_CASES else [pytest.mark.slow]
            for fw in FRAMEWORKS:
                yield pytest.param(model, dtype, fw, marks=marks, id=f"{model}-{dtype}-{fw}")


class Case:
    """torchvision's model of one size in one dtype, with randomised BatchNorm, its state_dict, input and logits."""

    def __init__(self, model: str, dtype: str):
        self.spec = tvio.spec_for(model)
        self.dtype = dtype
        self.torchvision = tvio.BACKEND.build(self.spec, seed=0, dtype=dtype)
        tvio.BACKEND.load_weights(
            self.torchvision, randomize_batchnorm(tvio.BACKEND.export_weights(self.torchvision), seed=1)
        )
        self.state_dict = {k: v.clone() for k, v in self.torchvision.state_dict().items()}
        self.x = np.random.default_rng(0).standard_normal(INPUT_SHAPE).astype(dtype)
        self.logits = tvio.BACKEND.forward(self.torchvision, self.x)
        self.models: dict[str, object] = {}

    def model(self, fw: str):
        if fw not in self.models:
            self.models[fw] = get_backend(fw).build(self.spec, seed=0, dtype=self.dtype)
        return self.models[fw]


@pytest.fixture(scope="session")
def case():
    """case(model, dtype) -> Case; only the latest is kept, since the tests run case by case (big models)."""
    return Latest(Case)


@pytest.mark.parametrize("model, dtype, fw", list(cases()))
def test_torchvision_checkpoint_into_backend_and_back(case, model, dtype, fw):
    """torchvision's state_dict -> canonical -> ``fw``: the logits are torchvision's; ``fw``'s export
    -> torchvision state_dict: ``load_state_dict(strict=True)`` accepts it and no bit has changed."""
    c, backend = case(model, dtype), get_backend(fw)
    native = c.model(fw)
    backend.load_weights(native, tvio.state_dict_to_canonical(c.state_dict, c.spec))
    got = backend.forward(native, c.x)
    max_abs, max_rel, ok = logit_diff(c.logits, got, dtype)
    assert ok, f"{model} {fw} {dtype}: max |diff| {max_abs:.3e}, relative {max_rel:.3e}; need {tolerance_text(dtype)}"

    back = tvio.canonical_to_state_dict(backend.export_weights(native), c.spec)
    c.torchvision.load_state_dict(back, strict=True)
    assert list(back) == list(c.state_dict)
    changed = [
        k for k, v in back.items() if not k.endswith("num_batches_tracked") and not torch.equal(v, c.state_dict[k])
    ]
    assert not changed and all(v.dtype == c.state_dict[k].dtype for k, v in back.items()), changed[:5]


@pytest.mark.parametrize("model", tvio.MODELS)
def test_torchvisions_own_model_has_the_expanded_table_and_parameter_count(model):
    """Stage depths, widths, group widths and strides, every state_dict key and shape, and the
    parameter count of torchvision's model equal the spec's."""
    net = tvio.build_torchvision(model)
    spec = tvio.spec_for(model)
    stages = []
    for stage in net.trunk_output.children():
        first = next(iter(stage.children()))
        conv = first.f.b[0]
        stages.append((len(stage), conv.out_channels, conv.in_channels // conv.groups, conv.stride[0]))
    assert stages == [(s.depth, s.width, s.group_width, s.stride) for s in spec.stages]
    assert [(k, tuple(v.shape)) for k, v in net.state_dict().items()] == list(tvio.expected_shapes(spec).items())
    assert sum(p.numel() for p in net.parameters()) == count_parameters(spec)[0]
    assert not any(m.bias is not None for m in net.modules() if isinstance(m, torch.nn.Conv2d))


@pytest.mark.parametrize("fw, shares", [("torchvision", True), ("torch", False)])
def test_an_empty_model_loaded_equals_a_built_one_loaded(fw, shares):
    """``build_empty`` (no random initialisation) then ``load_weights``: the same tensors, BatchNorm
    counters at 0 and logits bit for bit as a seeded build loaded with the same weights. The torch
    backend's model owns its tensors; torchvision's takes the weights' own arrays (``assign=True``)."""
    backend = tvio.BACKEND if fw == "torchvision" else get_backend(fw)
    spec = tvio.spec_for(SMALL)
    weights = randomize_batchnorm(tvio.BACKEND.export_weights(tvio.BACKEND.build(spec, seed=5, dtype="float64")), 6)
    built, empty = backend.build(spec, seed=0, dtype="float64"), backend.build_empty(spec, dtype="float64")
    for model in (built, empty):
        backend.load_weights(model, weights)
    x = np.random.default_rng(0).standard_normal(INPUT_SHAPE)
    assert backend.forward(empty, x).tobytes() == backend.forward(built, x).tobytes()
    assert list(empty.state_dict()) == list(built.state_dict())
    assert all(torch.equal(value, built.state_dict()[key]) for key, value in empty.state_dict().items())
    stem_conv = next(empty.parameters())
    weights["stem.conv.weight"][...] = 0
    assert bool(torch.all(stem_conv == 0)) == shares


# ---- files ----

SMALL = "regnet_x_200mf"


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    """A random torchvision RegNetX-200MF (randomised BatchNorm), float64, as .pth and .safetensors."""
    spec = tvio.spec_for(SMALL)
    net = tvio.BACKEND.build(spec, seed=3, dtype="float64")
    tvio.BACKEND.load_weights(net, randomize_batchnorm(tvio.BACKEND.export_weights(net), seed=4))
    folder = tmp_path_factory.mktemp("checkpoint")
    torch.save(net.state_dict(), folder / "tv.pth")
    tvio.write_state_dict(net.state_dict(), folder / "tv.safetensors")
    return net, folder


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_state_dict_files_round_trip_bit_exact(small_checkpoint, suffix):
    net, folder = small_checkpoint
    spec = net.spec
    weights = tvio.state_dict_to_canonical(tvio.read_state_dict(folder / f"tv{suffix}"), spec)
    tvio.write_state_dict(tvio.canonical_to_state_dict(weights, spec), folder / f"out{suffix}")
    if suffix == ".pth":
        written = torch.load(folder / "out.pth", weights_only=True)
    else:
        from safetensors.torch import load_file

        written = load_file(folder / "out.safetensors")
    original = net.state_dict()
    assert set(written) == set(original)
    assert all(torch.equal(written[k], v) for k, v in original.items() if not k.endswith("num_batches_tracked"))


def test_a_pickled_object_is_refused(tmp_path):
    torch.save({"epoch": 3, "model": {"fc.weight": torch.zeros(2)}}, tmp_path / "checkpoint.pth")
    from parity.weights import WeightsError

    with pytest.raises(
        WeightsError,
        match=r"expected a state_dict \(a mapping of names to tensors\), got a mapping with keys \['epoch', 'model'\]",
    ):
        tvio.read_state_dict(tmp_path / "checkpoint.pth")


# ---- parity convert ----


def convert(capsys, *argv):
    code = cli.main(["convert", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_convert_torchvision_to_mxnet_and_back(capsys, small_checkpoint, tmp_path):
    net, folder = small_checkpoint
    tv, mx, back = folder / "tv.pth", tmp_path / "mx.params", tmp_path / "back.safetensors"
    argv = ["--from", f"torchvision:{SMALL}", "--weights", str(tv), "--to", "mxnet", "--out", str(mx)]
    code, out, _ = convert(capsys, *argv, "--check-size", "32,32")
    assert code == 0 and "PASS" in out and "need max |diff| <= 1e-09" in out and "wrote" in out, out
    argv = ["--from", "mxnet:regnetx_200mf", "--weights", str(mx), "--to", "torchvision", "--out", str(back)]
    code, out, _ = convert(capsys, *argv, "--check-size", "32,32")
    assert code == 0 and "PASS" in out, out
    from safetensors.torch import load_file

    fresh = tvio.BACKEND.build(net.spec, seed=9, dtype="float64")
    fresh.load_state_dict(load_file(back), strict=True)
    original = net.state_dict()
    assert all(
        torch.equal(v, original[k]) for k, v in fresh.state_dict().items() if not k.endswith("num_batches_tracked")
    )


def test_convert_exits_1_and_writes_nothing_when_the_logits_disagree(capsys, small_checkpoint, tmp_path, monkeypatch):
    from parity import harness

    monkeypatch.setitem(harness.TOLERANCE, "float32", ("rel", 0.0))  # mxnet and torch round differently in float32
    _, folder = small_checkpoint
    argv = ["--from", f"torchvision:{SMALL}", "--weights", str(folder / "tv.safetensors"), "--to", "mxnet"]
    code, out, _ = convert(
        capsys, *argv, "--out", str(tmp_path / "mx.params"), "--check-size", "32,32", "--dtype", "float32"
    )
    assert code == 1 and "FAIL" in out and "not written" in out and not (tmp_path / "mx.params").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--from", "torchvision:regnet_x_401mf", "--to", "tf"],
            "--from: unknown torchvision model 'regnet_x_401mf'; known: regnet_x_200mf",
        ),
        (
            ["--from", "torchvision:regnet_x_200mf", "--to", "caffe"],
            "--to: expected torchvision:MODEL or one of torch, jax, tf, mxnet",
        ),
        (["--from", "jax", "--to", "torchvision"], "--from: name the model"),
        (
            ["--from", "jax:regnetx_200mf", "--to", "torchvision:regnet_x_400mf"],
            "--from names regnetx_200mf but --to names regnetx_400mf",
        ),
        (["--from", "jax:regnetx32", "--to", "torchvision"], "regnetx32 is not a torchvision RegNetX"),
        (
            ["--from", "torchvision:regnet_x_200mf", "--to", "tf", "--out", "x.pth"],
            "--out: expected a .safetensors file for tf, got 'x.pth'",
        ),
        (
            ["--from", "torchvision:regnet_x_200mf", "--to", "tf", "--format", "native", "--out", "x.safetensors"],
            "--out: a native tf file is .weights.h5 (--format canonical writes canonical .safetensors), "
            "got 'x.safetensors'",
        ),
        (
            ["--from", "torchvision:regnet_x_200mf", "--to", "tf", "--weights", "nope.pth"],
            "--weights: no such file 'nope.pth'",
        ),
        (
            ["--from", "torchvision:regnet_x_200mf", "--to", "tf", "--check-size", "32"],
            "--check-size: expected 2 positive integers",
        ),
        (
            ["--from", "torchvision:regnet_x_400mf", "--to", "mxnet"],
            "it fits regnet_x_200mf): 'trunk_output.block1.block1-0.proj.0.weight': "
            "expected shape (32, 32, 1, 1), got (24, 32, 1, 1)",
        ),
    ],
)
def test_convert_usage_errors_exit_2_with_one_line(capsys, small_checkpoint, tmp_path, argv, message):
    _, folder = small_checkpoint
    defaults = {
        "--weights": str(folder / "tv.pth"),
        "--out": str(tmp_path / "out.safetensors"),
        "--format": "canonical",
    }
    given = dict(zip(argv[::2], argv[1::2], strict=True))
    code, out, err = convert(capsys, *argv, *(x for k, v in defaults.items() if k not in given for x in (k, v)))
    assert code == 2 and out == "", out
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err


class Payload:
    """A pickle that would create a marker file if it were ever unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def pickled(marker):
    return pickle.dumps(Payload(marker))


def torch_saved(marker):
    buffer = io.BytesIO()
    torch.save({"stem.0.weight": torch.zeros(2), "evil": Payload(marker)}, buffer)
    return buffer.getvalue()


def truncated(marker):
    path = marker.with_suffix(".safetensors")
    save_weights({"stem.conv.weight": np.zeros((4, 3, 3, 3), np.float32)}, path)
    return path.read_bytes()[:-7]


def empty(marker):
    return b""


PICKLE_REFUSED = "a pickle-based file (PyTorch .pth/.pt or pickle), not safetensors"
TORCH_LOAD_FAILED = "torch.load(weights_only=True) cannot read it: "


@pytest.mark.parametrize(
    "source, file, content, message",
    [
        ("torch:regnetx_200mf", "w.safetensors", pickled, PICKLE_REFUSED),
        ("torch:regnetx_200mf", "w.safetensors", torch_saved, PICKLE_REFUSED),
        ("torch:regnetx_200mf", "w.safetensors", truncated, "not a valid safetensors file"),
        (f"torchvision:{SMALL}", "tv.safetensors", pickled, PICKLE_REFUSED),
        (f"torchvision:{SMALL}", "tv.safetensors", truncated, "not a valid safetensors file"),
        (f"torchvision:{SMALL}", "tv.pth", torch_saved, TORCH_LOAD_FAILED + "Weights only load failed"),
        (f"torchvision:{SMALL}", "tv.pth", pickled, TORCH_LOAD_FAILED),
        (f"torchvision:{SMALL}", "tv.pth", empty, TORCH_LOAD_FAILED + "EOFError"),
    ],
    ids=[
        "pickle",
        "torch-save",
        "truncated",
        "tv-pickle",
        "tv-truncated",
        "tv-pth-payload",
        "tv-pth-pickle",
        "tv-empty",
    ],
)
@pytest.mark.filterwarnings("ignore:Detected pickle protocol")  # torch.load's weights-only unpickler, on a plain pickle
def test_convert_refuses_a_broken_or_pickle_file_naming_it(capsys, tmp_path, source, file, content, message):
    """Every --weights file is read by parity.load_weights (safetensors) or torch.load(weights_only=True)."""
    marker = tmp_path / "code-ran"
    weights, out = tmp_path / file, tmp_path / "out.safetensors"
    weights.write_bytes(content(marker))
    destination = "torch" if source.startswith("torchvision") else "torchvision"
    argv = ["--from", source, "--weights", str(weights), "--to", destination, "--out", str(out)]
    code, stdout, err = convert(capsys, *argv)
    assert code == 2 and stdout == "", stdout
    assert err.startswith(f"parity: error: --weights {weights}: {message}") and err.count("\n") == 1, err
    assert not out.exists() and not marker.exists()


def test_convert_from_python_reports_the_check_and_each_steps_time(small_checkpoint, tmp_path):
    net, folder = small_checkpoint
    out = tmp_path / "torch.safetensors"
    result = conversion.convert(
        f"torchvision:{SMALL}", folder / "tv.pth", "torch", out, "canonical", check_size=(32, 32), progress=False
    )
    assert result.written and out.is_file() and result.dtype == "float64"
    expected = tvio.state_dict_to_canonical(tvio.read_state_dict(folder / "tv.pth"), net.spec)
    written = load_weights(out)
    assert set(written) == set(expected) and all(written[k].tobytes() == v.tobytes() for k, v in expected.items())
    check = result.check
    assert check.passed and check.shape == (1, 3, 32, 32)
    steps = ["read", "build source", "load source", "forward source", "build", "load", "forward", "export", "write"]
    assert list(result.seconds) == steps


def test_convert_from_tf_to_torchvision_imports_torchvision_first(tmp_path):
    """Importing torchvision after tensorflow kills the process; a fresh one shows it does not happen."""
    spec = tvio.spec_for(SMALL)
    net = tvio.BACKEND.build(spec, seed=3, dtype="float32")
    save_weights(tvio.BACKEND.export_weights(net), tmp_path / "tf.safetensors")
    argv = ["--from", "tf:regnetx_200mf", "--weights", str(tmp_path / "tf.safetensors"), "--to", "torchvision"]
    argv += ["--out", str(tmp_path / "tv.safetensors"), "--no-check"]
    command = [sys.executable, "-m", "parity.cli", "convert", *argv]
    done = subprocess.run(command, cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and f"wrote {tmp_path / 'tv.safetensors'}" in done.stdout, done.stderr[-2000:]
