"""timm's RegNetX and ResNet checkpoints into the canonical form.

timm names a RegNetX's tensors by its own module tree (``s2.b1.conv2.conv.weight``, 1-based stages and
blocks, each conv and its BatchNorm in a ``ConvNormAct``); its ResNets use torchvision's names, which the
canonical ones of ``tv_resnet18``/``tv_resnet50`` already are. Both use PyTorch's layouts, so the mapping
is names only: a ``parity.hub.NameTable`` per family, as data.

timm's RegNetX sizes are the paper's twelve, made with pycls' rounding (``regnetx_004``'s last stage is
384 wide; torchvision's 400): the specs here are built with ``rounding="pycls"`` from the paper's
parameters. Files are a state_dict as ``.safetensors`` or ``.pth``/``.pt`` (read as torchvision's are,
``torch.load(weights_only=True)``). timm is imported only by ``backend()``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from parity.backends import BackendUnavailable
from parity.hub import CANONICAL_LEAVES, NameTable
from parity.specs import AnyNet, BatchNorm, Spec, get_spec
from parity.specs.regnet_family import REGNETX, STEM_WIDTH, RegNetParams, stages
from parity.weights import Weights, WeightsError, schema, validate

# timm's RegNetX name -> the paper's parameters (pycls configs/dds_baselines/regnetx); the four sizes
# torchvision lacks are added to parity.specs.regnet_family's eight
REGNETX_PARAMS: dict[str, RegNetParams] = {
    "regnetx_002": REGNETX["200mf"],
    "regnetx_004": REGNETX["400mf"],
    "regnetx_006": RegNetParams(depth=16, w0=48, wa=36.97, wm=2.24, group_width=24),
    "regnetx_008": REGNETX["800mf"],
    "regnetx_016": REGNETX["1_6gf"],
    "regnetx_032": REGNETX["3_2gf"],
    "regnetx_040": RegNetParams(depth=23, w0=96, wa=38.65, wm=2.43, group_width=40),
    "regnetx_064": RegNetParams(depth=17, w0=184, wa=60.83, wm=2.07, group_width=56),
    "regnetx_080": REGNETX["8gf"],
    "regnetx_120": RegNetParams(depth=19, w0=168, wa=73.36, wm=2.37, group_width=112),
    "regnetx_160": REGNETX["16gf"],
    "regnetx_320": REGNETX["32gf"],
}
# timm's ResNet name -> the parity model with torchvision's (= timm's) module names
RESNETS = {"resnet18": "tv_resnet18", "resnet50": "tv_resnet50"}
MODELS = (*REGNETX_PARAMS, *RESNETS)

# canonical AnyNet layer -> timm's: conv k and bn k of a block are its ConvNormAct ``conv{k}``; the
# shortcut (conv4, bn4) is ``downsample``
REGNET_TABLE = NameTable(
    modules=(
        (r"^stages\.(\d+)\.blocks\.(\d+)", lambda m: f"s{int(m[1]) + 1}.b{int(m[2]) + 1}"),
        (r"\.(conv|bn)4$", r".downsample.\1"),
        (r"\.(conv|bn)([123])$", r".conv\2.\1"),
    ),
    leaves=CANONICAL_LEAVES,
)
RESNET_TABLE = NameTable(modules=(), leaves=CANONICAL_LEAVES)
BN_COUNTER = "num_batches_tracked"

Progress = Callable[[Iterable], Iterable]


@functools.cache
def spec_for(model: str) -> Spec:
    """The spec of timm model ``model`` (``regnetx_002``, ``resnet50``)."""
    if model in RESNETS:
        return get_spec(RESNETS[model])
    if model not in REGNETX_PARAMS:
        raise KeyError(f"unknown timm model {model!r}; known: {', '.join(MODELS)}")
    return AnyNet(
        name=f"timm_{model}",
        stem_width=STEM_WIDTH,
        stages=stages(REGNETX_PARAMS[model], rounding="pycls"),
        num_classes=1000,
        in_channels=3,
        conv_bias=False,
        input_size=(224, 224),
    )


def model_for(spec: Spec) -> str:
    """The timm name of a spec that ``spec_for`` makes."""
    for model in MODELS:
        if spec_for(model) == spec:
            return model
    raise KeyError(f"{spec.name} is not a timm model; timm models: {', '.join(MODELS)}")


def table_for(spec: Spec) -> NameTable:
    return REGNET_TABLE if isinstance(spec, AnyNet) else RESNET_TABLE


def expected_shapes(spec: Spec) -> dict[str, tuple[int, ...]]:
    """Every key of a timm state_dict of ``spec`` with its shape, ``num_batches_tracked`` included."""
    table, shapes = table_for(spec), {}
    for param in schema(spec).values():
        shapes[table.native_name(param)] = param.shape
        if isinstance(param.layer, BatchNorm) and param.leaf == "running_var":
            shapes[f"{table.native_module(param.layer.path)}.{BN_COUNTER}"] = ()
    return shapes


def state_dict_to_canonical(state_dict: Mapping[str, Any], spec: Spec, progress: Progress = iter) -> Weights:
    """Canonical weights of a timm state_dict (torch tensors or numpy arrays), sharing its memory; one
    WeightsError naming every missing, unexpected or mis-shaped key before anything is converted."""
    expected = expected_shapes(spec)
    problems = [
        f"missing key {key!r} (expected shape {shape})"
        for key, shape in expected.items()
        if key not in state_dict and not key.endswith(BN_COUNTER)
    ]
    problems += [f"unexpected key {key!r}" for key in state_dict if key not in expected]
    problems += [
        f"{key!r}: expected shape {expected[key]}, got {tuple(value.shape)}"
        for key, value in state_dict.items()
        if key in expected and tuple(value.shape) != expected[key]
    ]
    if problems:
        raise WeightsError(
            f"state_dict does not fit timm's {model_for(spec)} ({len(problems)} problem(s)):\n  "
            + "\n  ".join(problems)
        )
    table = table_for(spec)
    weights = {p.name: _numpy(state_dict[table.native_name(p)]) for p in progress(schema(spec).values())}
    validate(weights, spec)
    return weights


def canonical_to_state_dict(weights: Mapping[str, np.ndarray], spec: Spec) -> dict[str, Any]:
    """A timm state_dict that ``load_state_dict(strict=True)`` accepts (BatchNorm counters 0)."""
    import torch

    validate(weights, spec)
    table, state_dict = table_for(spec), {}
    for param in schema(spec).values():
        state_dict[table.native_name(param)] = torch.from_numpy(np.ascontiguousarray(weights[param.name]))
        if isinstance(param.layer, BatchNorm) and param.leaf == "running_var":
            state_dict[f"{table.native_module(param.layer.path)}.{BN_COUNTER}"] = torch.tensor(0)
    return state_dict


def _numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)


class TimmBackend:
    """timm's own models behind the core of the backend contract (build, forward, export_weights,
    load_weights), so that a conversion checks its logits against timm's forward. A built model
    carries its spec as ``model.spec``."""

    name = "timm"
    layout = "NCHW"

    def build(self, spec: Spec, seed: int = 0, dtype: str = "float32") -> Any:
        """timm's model of ``spec`` with random weights (``pretrained=False``: never downloads), in eval mode."""
        import timm
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = timm.create_model(model_for(spec), pretrained=False).to(getattr(torch, dtype)).eval()
        model.spec = spec
        return model

    def forward(self, model: Any, x_nchw: np.ndarray, train: bool = False) -> np.ndarray:
        import torch

        with torch.no_grad():
            return model(torch.from_numpy(x_nchw)).numpy()

    def export_weights(self, model: Any) -> Weights:
        return {k: v.copy() for k, v in state_dict_to_canonical(model.state_dict(), model.spec).items()}

    def load_weights(self, model: Any, weights: Mapping[str, np.ndarray]) -> None:
        model.load_state_dict(canonical_to_state_dict(weights, model.spec), strict=True)


def backend() -> TimmBackend:
    """The timm backend; BackendUnavailable naming the pip extra where timm is not installed."""
    try:
        import timm  # noqa: F401
    except ImportError as error:
        raise BackendUnavailable(f"timm is not installed: pip install -e '.[timm]' ({error})") from None
    return TimmBackend()
