"""Property-based parity: AnyNet/ResNeXt configurations nobody hand-picked agree in every
directed transfer, and with the numpy reference, in float64.

The CI profile runs a bounded number of examples; ``--hypothesis-profile=deep`` runs 1000.
A failure shrinks to a minimal configuration, printed as a spec literal (``AnyNet(...)``).

The examples are split over ``SHARDS`` test ids, each drawing its own, so that pytest-xdist runs
them in parallel: ``pytest parity/test_regnet_fuzz.py --hypothesis-profile=deep -n auto --dist load``
(``--dist load`` hands out single tests; ``loadfile`` would keep the shards on one worker).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from parity import reference
from parity.backends import FRAMEWORKS
from parity.harness import TransferRig, logit_diff, tolerance_text
from parity.specs import AnyNet, Stage


@st.composite
def stages(draw) -> Stage:
    """A stage whose bottleneck width round(width * bot_mul) is a multiple of its group width; one group
    (group width == bottleneck width) and several groups are both drawn."""
    group_width = draw(st.sampled_from([1, 2, 4, 8]))
    bot_mul = draw(st.sampled_from([0.25, 0.5, 1.0]))
    groups = draw(st.integers(1, 3))
    width = int(group_width * groups / bot_mul)
    return Stage(
        depth=draw(st.integers(1, 3)),
        width=width,
        group_width=group_width,
        bot_mul=bot_mul,
        stride=draw(st.sampled_from([1, 2])),
    )


anynets = st.builds(
    AnyNet,
    name=st.just("fuzzed_anynet"),
    stem_width=st.integers(1, 12),
    stages=st.lists(stages(), min_size=1, max_size=3).map(tuple),
    num_classes=st.integers(1, 6),
    in_channels=st.integers(1, 3),
    bn_eps=st.sampled_from([1e-5, 1e-3]),
    bn_momentum=st.sampled_from([0.1, 0.01]),
    conv_bias=st.booleans(),
)


SHARDS = 4


@pytest.mark.parametrize("shard", range(SHARDS), ids=lambda shard: f"shard{shard}")
@settings(max_examples=-(-settings.default.max_examples // SHARDS))  # together, at least the profile's count
@given(spec=anynets, height=st.integers(1, 21), width=st.integers(1, 21), seed=st.integers(0, 2**16))
def test_fuzzed_anynet_agrees_in_every_direction(shard, spec, height, width, seed):
    """Each ``shard`` draws its own examples (Hypothesis seeds every test id apart)."""
    x = np.random.default_rng(seed).standard_normal((1, spec.in_channels, height, width))
    rig = TransferRig(spec, FRAMEWORKS, "float64", seed=seed)
    failures = []
    for src in FRAMEWORKS:
        weights, expected = rig.source(src, x)
        max_abs, _, ok = logit_diff(reference.forward(spec, weights, x), expected, "float64")
        if not ok:
            failures.append(f"{src} vs numpy reference: max |diff| {max_abs:.3e}")
        for dst in FRAMEWORKS:
            if dst != src:
                max_abs, _, ok = logit_diff(expected, rig.destination(dst, weights, x), "float64")
                if not ok:
                    failures.append(f"{src}->{dst}: max |diff| {max_abs:.3e}")
    note(f"input (1, {spec.in_channels}, {height}, {width})")
    assert not failures, f"need {tolerance_text('float64')}:\n" + "\n".join(failures)
