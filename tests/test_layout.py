import numpy as np
import pytest

from parity import layout


def test_kernel_transposes_are_inverse_and_put_axes_where_each_framework_wants_them():
    w = np.arange(5 * 3 * 2 * 4, dtype=np.float32).reshape(5, 3, 2, 4)  # O, I/g, kH, kW
    hwio = layout.oihw_to_hwio(w)
    assert hwio.shape == (2, 4, 3, 5)
    assert hwio[1, 2, 0, 4] == w[4, 0, 1, 2]
    assert np.array_equal(layout.hwio_to_oihw(hwio), w)
    assert hwio.flags.c_contiguous


def test_activation_transposes_are_inverse():
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 7))
    nhwc = layout.nchw_to_nhwc(x)
    assert nhwc.shape == (2, 5, 7, 3) and nhwc[1, 4, 6, 2] == x[1, 2, 4, 6]
    assert np.array_equal(layout.nhwc_to_nchw(nhwc), x)
    assert layout.nhwc_shape_to_nchw((2, 5, 7, 3)) == (2, 3, 5, 7)
    assert layout.nchw_shape_to_nhwc((2, 3, 5, 7)) == (2, 5, 7, 3)
    assert layout.nhwc_shape_to_nchw((2, 10)) == (2, 10)


def test_flatten_permutation_maps_nchw_flatten_order_to_nhwc():
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5))
    p = layout.flatten_permutation(3, 4, 5)
    assert np.array_equal(layout.nchw_to_nhwc(x).reshape(2, -1), x.reshape(2, -1)[:, p])
    # a dense layer gives the same outputs when its input axis is permuted the same way
    w = np.random.default_rng(2).standard_normal((6, 60))
    assert np.allclose(x.reshape(2, -1) @ w.T, layout.nchw_to_nhwc(x).reshape(2, -1) @ w[:, p].T, rtol=1e-13, atol=0)


# Shapes where the transposed view is itself contiguous, so a view would slip through.
@pytest.mark.parametrize(
    "transform, arg",
    [
        (layout.identity, np.ones(4)),
        (layout.transpose_2d, np.ones((1, 4))),
        (layout.oihw_to_hwio, np.ones((1, 1, 1, 4))),
        (layout.hwio_to_oihw, np.ones((1, 1, 1, 4))),
    ],
)
def test_every_transform_returns_a_copy_never_a_view(transform, arg):
    assert not np.shares_memory(transform(arg), arg)
