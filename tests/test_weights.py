import numpy as np
import pytest

from parity.specs import ResNeXtBlock, get_spec
from parity.weights import (
    WeightsError,
    cast,
    load_weights,
    randomize_batchnorm,
    randomize_biases,
    save_weights,
    schema,
    validate,
)

BLOCK = ResNeXtBlock(in_channels=8, num_channels=16, group_width=4, bot_mul=1, use_1x1conv=True, stride=2)


def zeros(spec, dtype="float32"):
    return {name: np.zeros(p.shape, dtype=dtype) for name, p in schema(spec).items()}


def test_schema_uses_pytorch_layouts_and_canonical_names():
    s = schema(BLOCK)
    assert s["conv2.weight"].shape == (16, 4, 3, 3)  # O, I/groups with groups = 16 // 4
    assert s["conv4.weight"].shape == (16, 8, 1, 1)
    assert [n for n in s if n.startswith("bn1.")] == ["bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"]
    regnet = schema(get_spec("regnetx32"))
    assert "stages.1.blocks.5.conv2.weight" in regnet and regnet["head.fc.weight"].shape == (10, 80)


def test_validate_lists_every_problem_at_once():
    w = zeros(BLOCK)
    del w["conv1.weight"]
    w["conv9.weight"] = np.zeros(3, np.float32)
    w["conv2.weight"] = np.zeros((16, 16, 3, 3), np.float32)
    w["bn1.bias"] = np.zeros(16, np.float64)
    w["bn2.weight"] = np.full(16, np.nan, np.float32)
    with pytest.raises(WeightsError) as info:
        validate(w, BLOCK, dtype="float32")
    message = str(info.value)
    for expected in (
        "missing key 'conv1.weight' (expected shape (16, 8, 1, 1))",
        "unexpected key 'conv9.weight'",
        "'conv2.weight': expected shape (16, 4, 3, 3), got (16, 16, 3, 3)",
        "'bn1.bias': expected dtype float32, got float64",
        "'bn2.weight': contains NaN or Inf",
    ):
        assert expected in message


def test_non_finite_values_pass_only_when_allowed():
    w = zeros(BLOCK)
    w["bn2.weight"][0] = np.inf
    validate(w, BLOCK, allow_nonfinite=True)
    with pytest.raises(WeightsError, match="bn2.weight"):
        validate(w, BLOCK)


def test_integer_tensors_are_rejected():
    w = zeros(BLOCK)
    w["conv1.bias"] = np.zeros(16, np.int64)
    with pytest.raises(WeightsError, match="'conv1.bias': expected dtype float32 or float64, got int64"):
        validate(w, BLOCK)


def test_randomize_batchnorm_moves_only_batchnorm_tensors_away_from_their_defaults():
    w = zeros(BLOCK)
    r = randomize_batchnorm(w, seed=0)
    assert all(np.array_equal(r[n], w[n]) for n in w if n.startswith("conv"))
    assert all(r[n].dtype == w[n].dtype for n in w)
    for n in w:
        if n.endswith("running_var"):
            assert r[n].min() > 0
        if n.startswith("bn"):
            assert not np.array_equal(r[n], w[n]) and not np.allclose(r[n], 1.0)
    assert all(np.array_equal(r[n], randomize_batchnorm(w, seed=0)[n]) for n in w)


def test_cast_copies_into_the_requested_dtype():
    c = cast(zeros(BLOCK), "float64")
    assert {v.dtype for v in c.values()} == {np.dtype("float64")}


def test_safetensors_round_trip_is_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    w = {n: rng.standard_normal(p.shape).astype(np.float32) for n, p in schema(BLOCK).items()}
    save_weights(w, tmp_path / "w.safetensors")
    loaded = load_weights(tmp_path / "w.safetensors")
    assert set(loaded) == set(w)
    assert all(loaded[n].tobytes() == w[n].tobytes() and loaded[n].dtype == w[n].dtype for n in w)


def test_randomize_biases_moves_conv_and_dense_biases_only():
    w = zeros(BLOCK)
    r = randomize_biases(w, seed=0)
    for n in w:
        is_conv_bias = n.startswith("conv") and n.endswith(".bias")
        assert np.array_equal(r[n], w[n]) != is_conv_bias, n
        assert r[n].dtype == w[n].dtype
