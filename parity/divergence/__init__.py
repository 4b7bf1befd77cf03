"""Where and why two backends diverge, in four parts:

- ``graph``: each activation point's node, and its inputs recomputed from A's activations;
- ``pitfalls``: the classic porting pitfalls and the layer diagnosis that names one;
- ``audit``: the structural audit of a model that cannot take the other's weights;
- ``explain``: the whole comparison behind ``parity explain`` and ``parity report``.
"""

from parity.divergence.audit import LayerDifference, audit, diagnose_structure, spec_structure
from parity.divergence.explain import (
    Cause,
    Divergence,
    ParamMapping,
    PointDiff,
    VariantUnavailable,
    explain,
    group_causes,
    layer_mapping,
    local_causes,
    point_diffs,
    tolerance_bound,
)
from parity.divergence.graph import each_point_inputs, point_inputs, point_nodes, point_sources
from parity.divergence.pitfalls import (
    AVGPOOL_EXCLUDES_PADDING,
    D2L_BNLENET_PADDING,
    D2L_DENSENET_CHANNELS,
    D2L_NIN_POOL,
    D2L_STAGE_BUG,
    DROPPED_PADDING,
    KERAS_BN,
    LAYER_PITFALLS,
    SAME_PADDING,
    UNPERMUTED_FLATTEN,
    UNTRANSPOSED_KERNEL,
    Hint,
    Pitfall,
    diagnose_layer,
    reproduces,
    same_pads,
)

__all__ = [
    "AVGPOOL_EXCLUDES_PADDING",
    "D2L_BNLENET_PADDING",
    "D2L_DENSENET_CHANNELS",
    "D2L_NIN_POOL",
    "D2L_STAGE_BUG",
    "DROPPED_PADDING",
    "KERAS_BN",
    "LAYER_PITFALLS",
    "SAME_PADDING",
    "UNPERMUTED_FLATTEN",
    "UNTRANSPOSED_KERNEL",
    "Cause",
    "Divergence",
    "Hint",
    "LayerDifference",
    "ParamMapping",
    "Pitfall",
    "PointDiff",
    "VariantUnavailable",
    "audit",
    "diagnose_layer",
    "diagnose_structure",
    "each_point_inputs",
    "explain",
    "group_causes",
    "layer_mapping",
    "local_causes",
    "point_diffs",
    "point_inputs",
    "point_nodes",
    "point_sources",
    "reproduces",
    "same_pads",
    "spec_structure",
    "tolerance_bound",
]
