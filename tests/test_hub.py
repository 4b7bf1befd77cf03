import numpy as np
import pytest

from parity.hub import NameTable, check_native_shapes, from_native, stream_to_native, to_native
from parity.specs import ResNeXtBlock, get_spec
from parity.weights import WeightsError, schema

BLOCK = ResNeXtBlock(in_channels=8, num_channels=16, group_width=4, bot_mul=1, use_1x1conv=True, stride=2)
# A table in the style of an NHWC framework, keyed "params/..." like Flax.
TABLE = NameTable(
    modules=((r"^", "params/"), (r"\.", "/")),
    leaves={
        "conv.weight": ("kernel", "OIHW->HWIO"),
        "conv.bias": ("bias", "identity"),
        "batchnorm.weight": ("scale", "identity"),
        "batchnorm.bias": ("bias", "identity"),
        "batchnorm.running_mean": ("mean", "identity"),
        "batchnorm.running_var": ("var", "identity"),
        "dense.weight": ("kernel", "(out,in)->(in,out)"),
        "dense.bias": ("bias", "identity"),
    },
    separator="/",
)


def canonical(spec, dtype="float32"):
    rng = np.random.default_rng(0)
    return {n: rng.standard_normal(p.shape).astype(dtype) for n, p in schema(spec).items()}


def test_to_native_and_back_is_bit_exact_and_uses_the_tables_names_and_layouts():
    w = canonical(BLOCK)
    native = to_native(BLOCK, w, TABLE, dtype="float32")
    assert native["params/conv2/kernel"].shape == (3, 3, 4, 16)
    assert np.array_equal(native["params/conv2/kernel"][1, 2, 3, 5], w["conv2.weight"][5, 3, 1, 2])
    back = from_native(BLOCK, native, TABLE)
    assert list(back) == list(w)
    assert all(back[n].tobytes() == w[n].tobytes() for n in w)


def test_dense_weights_are_transposed_and_module_paths_rewritten():
    spec = get_spec("regnetx32")
    rows = {canonical_name: (native, shape, t) for canonical_name, native, shape, t in TABLE.rows(spec)}
    assert rows["head.fc.weight"] == ("params/head/fc/kernel", (80, 10), "(out,in)->(in,out)")
    assert rows["stages.1.blocks.0.conv2.weight"] == (
        "params/stages/1/blocks/0/conv2/kernel",
        (3, 3, 16, 80),
        "OIHW->HWIO",
    )


def test_to_native_validates_before_converting():
    w = canonical(BLOCK)
    w["conv2.weight"] = w["conv2.weight"][:, :2]
    with pytest.raises(WeightsError, match=r"'conv2.weight': expected shape \(16, 4, 3, 3\), got \(16, 2, 3, 3\)"):
        to_native(BLOCK, w, TABLE, dtype="float32")


def native_shapes(spec, table):
    return {table.native_name(p): table.native_shape(p) for p in schema(spec).values()}


def test_stream_to_native_gives_to_natives_arrays_one_at_a_time():
    w = canonical(BLOCK)
    expected = to_native(BLOCK, w, TABLE, dtype="float32")
    stream = stream_to_native(BLOCK, w, TABLE, native_shapes(BLOCK, TABLE), dtype="float32")
    name, first = next(stream)
    assert name == "params/conv1/kernel" and np.array_equal(first, expected[name])
    rest = dict(stream)
    assert list(rest) == list(expected)[1:] and all(np.array_equal(v, expected[k]) for k, v in rest.items())


def test_stream_to_native_checks_the_weights_and_the_models_shapes_before_converting():
    w = canonical(BLOCK)
    w["bn1.weight"] = w["bn1.weight"].astype("float64")
    shapes = native_shapes(BLOCK, TABLE)
    shapes["params/conv2/kernel"] = (3, 3, 16, 4)
    with pytest.raises(WeightsError, match=r"'bn1.weight': expected dtype float32, got float64"):
        stream_to_native(BLOCK, w, TABLE, shapes, dtype="float32")
    with pytest.raises(WeightsError) as info:
        stream_to_native(BLOCK, canonical(BLOCK), TABLE, shapes | {"params/extra": (1,)}, dtype="float32")
    assert "'params/conv2/kernel': model expects shape (3, 3, 16, 4), got (3, 3, 4, 16)" in str(info.value)
    assert "model tensor 'params/extra' not provided" in str(info.value)


def test_from_native_names_missing_native_tensors():
    native = to_native(BLOCK, canonical(BLOCK), TABLE, dtype="float32")
    del native["params/bn4/var"]
    with pytest.raises(WeightsError, match="params/bn4/var"):
        from_native(BLOCK, native, TABLE)


def test_check_native_shapes_reports_every_disagreement():
    with pytest.raises(WeightsError) as info:
        check_native_shapes({"a": (1, 2), "b": (3,)}, {"a": np.zeros((2, 1)), "c": np.zeros(1)})
    assert "'a': model expects shape (1, 2), got (2, 1)" in str(info.value)
    assert "model has no tensor 'c'" in str(info.value) and "model tensor 'b' not provided" in str(info.value)


def test_a_table_naming_an_unknown_transform_is_rejected():
    with pytest.raises(ValueError, match="unknown layout transforms"):
        NameTable(modules=(), leaves={"conv.weight": ("kernel", "OIHW->IOHW")})


def test_an_hwc_flattening_table_permutes_dense_weights_after_a_flatten_and_back():
    from parity.layout import nchw_to_nhwc
    from parity.specs import InceptionNet

    spec = InceptionNet()
    hwc = NameTable(modules=TABLE.modules, leaves=TABLE.leaves, separator="/", flatten_order="HWC")
    w = canonical(spec, "float64")
    native = to_native(spec, w, hwc, dtype="float64")
    features = np.random.default_rng(3).standard_normal((2, 88, 4, 4))
    # the NHWC-flattened features through the native (in, out) kernel give the canonical logits
    canonical_logits = features.reshape(2, -1) @ w["fc.weight"].T
    native_logits = nchw_to_nhwc(features).reshape(2, -1) @ native["params/fc/kernel"]
    # The same 1408 products summed in another order: in float64 any order, blocked or FMA,
    # is within n * eps * sum |products| of the exact sum (~3e-10 here; real kernels reach
    # ~1e-13), so twice that bounds the difference on every BLAS kernel. A wrong permutation
    # pairs features with the wrong weights and moves logits of scale ~50 by 5 or more.
    terms = features[0].size
    bound = 2 * terms * np.finfo(np.float64).eps * (np.abs(features).reshape(2, -1) @ np.abs(w["fc.weight"]).T)
    assert (np.abs(native_logits - canonical_logits) <= bound).all()
    back = from_native(spec, native, hwc)
    assert all(back[n].tobytes() == w[n].tobytes() for n in w)
    # the CHW table leaves the same weight unpermuted
    assert np.array_equal(to_native(spec, w, TABLE, dtype="float64")["params/fc/kernel"], w["fc.weight"].T)
