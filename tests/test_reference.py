"""The numpy reference itself, checked against a direct per-pixel sum (no shared code path)."""

import numpy as np
import pytest

from parity.reference import conv2d


def conv2d_per_pixel(x, w, b, stride, padding, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh, ow = (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1
    og = o // groups
    y = np.zeros((n, o, oh, ow))
    for b_ in range(n):
        for oc in range(o):
            g = oc // og
            for i in range(oh):
                for j in range(ow):
                    window = xp[b_, g * cg : (g + 1) * cg, i * stride : i * stride + kh, j * stride : j * stride + kw]
                    y[b_, oc, i, j] = np.sum(window * w[oc]) + (b[oc] if b is not None else 0.0)
    return y


@pytest.mark.parametrize(
    "stride, padding, groups, kernel", [(1, 1, 1, 3), (2, 1, 2, 3), (2, 0, 1, 1), (1, 1, 4, 3), (2, 1, 4, 3)]
)
def test_grouped_conv_equals_per_pixel_sum(stride, padding, groups, kernel):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 7, 6))
    w = rng.standard_normal((12, 8 // groups, kernel, kernel))
    b = rng.standard_normal(12)
    # float64 sums of at most 72 products of O(1) terms, in two orders: ~1e-14 apart
    assert np.allclose(
        conv2d(x, w, b, stride, padding, groups), conv2d_per_pixel(x, w, b, stride, padding, groups), rtol=0, atol=1e-12
    )


def test_conv_rejects_a_kernel_that_does_not_fit_the_groups():
    with pytest.raises(ValueError, match="groups=3"):
        conv2d(np.zeros((1, 8, 4, 4)), np.zeros((6, 4, 3, 3)), None, 1, 1, 3)


def test_pools_against_a_direct_loop():
    from parity.reference import avg_pool, max_pool

    x = -np.abs(np.random.default_rng(1).standard_normal((1, 2, 5, 4)))  # negative: a zero pad would win a max
    got_max, got_avg = max_pool(x, 3, 2, 1), avg_pool(x, 3, 1, 1)
    for i in range(got_max.shape[2]):
        for j in range(got_max.shape[3]):
            rows, cols = slice(max(2 * i - 1, 0), 2 * i + 2), slice(max(2 * j - 1, 0), 2 * j + 2)
            assert np.array_equal(got_max[0, :, i, j], x[0, :, rows, cols].max(axis=(1, 2)))
    for i in range(5):
        for j in range(4):
            window = x[0, :, max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2]
            # count_include_pad: always divided by 9; float64, 9 terms: ~1e-16
            assert np.allclose(got_avg[0, :, i, j], window.sum(axis=(1, 2)) / 9, rtol=0, atol=1e-15)
