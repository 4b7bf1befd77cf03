"""Training parity: train-mode BatchNorm statistics, gradients and K optimizer steps equal in PyTorch, Flax,
Keras and Gluon, every framework against PyTorch's (the canonical conventions).

Select with ``pytest parity -k "regnet and train"``. Dropout is off in every run (rate 0 at build time,
``parity.training.without_dropout``): four frameworks cannot draw one mask. Bounds, relative to each tensor's
largest value (``parity.training.gradient_scales`` for the biases whose exact gradient is 0):

- gradients, float64 1e-9: the frameworks compute the same formulas in another summation order, which costs
  up to 1.3e-13 (measured, RegNetX32); a layout or convention bug costs O(1).
- gradients, float32 2e-4: each gradient is a sum over N*H*W (up to ~10^3 here) products, through a
  backward pass of ~20 layers, each adding ~1e-7 relative rounding; measured up to 8e-5 (RegNetX32's
  BatchNorm shifts), 4e-6 for the other nets.
- train-mode logits and running statistics: as gradients (batch means and variances, the forward half of them).
- K steps: ``parity.training.run.judge``, as ``parity train-check``: ``TOLERANCE`` (float64 1e-9, for SGD and AdamW
  alike), AdamW's biases whose exact gradient is 0 and the running means they shift within a bound derived from
  AdamW's step on top (``parity.training.run.ResidueBound``).
"""

from __future__ import annotations

import numpy as np
import pytest

from parity import reference
from parity.backends import FRAMEWORKS, get_backend
from parity.specs import get_spec
from parity.training import (
    NonFinite,
    OptimizerSpec,
    UnsupportedOption,
    check_finite,
    gradient_scales,
    reference_step,
    relative_diffs,
    synthetic_batches,
    without_dropout,
)
from parity.training.core import zero_gradient_biases
from parity.training.explain import explain_train
from parity.training.optim import ReferenceState
from parity.training.run import TOLERANCE, ResidueBound, judge, start_weights, training_module, training_steps

GRADIENT_BOUND = {"float64": 1e-9, "float32": 2e-4}
OTHERS = [fw for fw in FRAMEWORKS if fw != "torch"]
# model -> the input size of its checks: the MNIST nets take 28x28 only; RegNetX32 16x16, the smallest at which
# every BatchNorm sees more than N values per channel (at 8x8 its last stage is 1x1, where BatchNorm of 2 values
# outputs +-1 and passes back a gradient ~eps: every earlier gradient would be residue); GoogLeNet 32x32, the
# smallest at which its convs up to inception 4 see more than their kernel's centre tap. torchvision's classics, by
# the same rule: the ResNets 64x64 (their last BatchNorms 2x2), AlexNet 64x64 (its last conv 3x3), VGG 32x32 (its
# last convs 2x2).
MODELS = {"regnetx32": (16, 16), "googlenet": (32, 32), "inception_mnist": (28, 28), "residual_mnist": (28, 28)}
CLASSICS = {
    "tv_resnet18": (64, 64),
    "tv_resnet50": (64, 64),
    "tv_alexnet": (64, 64),
    "tv_vgg11": (32, 32),
    "tv_vgg16": (32, 32),
    "tv_vgg16_bn": (32, 32),
}
SIZES = {**MODELS, **CLASSICS}
SMALL = ["inception_mnist", "residual_mnist"]
BATCH = 2  # every check, so that each compiled loss-and-gradient serves them all


def _gradient_cases():
    """(model, dtype, framework) ordered so that each (model, dtype) is computed once: float64 for all, float32
    for the MNIST nets (the big nets' float32 under ``slow``); torchvision's classics float64, under ``slow``
    (tens of seconds each, VGG16's float64 gradients 1.1 GB per framework)."""
    for model in MODELS:
        for dtype in ("float64", "float32"):
            marks = [] if dtype == "float64" or model in SMALL else [pytest.mark.slow]
            for fw in OTHERS:
                yield pytest.param(model, dtype, fw, id=f"{model}-{fw}-{dtype}", marks=marks)
    for model in CLASSICS:
        for fw in OTHERS:
            yield pytest.param(model, "float64", fw, id=f"{model}-{fw}-float64", marks=[pytest.mark.slow])


@pytest.fixture(scope="module")
def gradient_runs():
    """(model, dtype) -> {framework: (loss, gradient names, gradient differences to torch's, logits, statistics)},
    each computed once from one model per (model, dtype, framework) that holds torch's start weights. Gradients
    are compared as they come and dropped (a framework's model and gradients go before the next is built): VGG16's
    are 1.1 GB in float64."""
    cache: dict = {}

    def get(model: str, dtype: str):
        if (model, dtype) not in cache:
            spec = without_dropout(get_spec(model))
            weights = start_weights(spec, dtype, seed=0)
            ((x, labels),) = synthetic_batches(spec, 1, BATCH, SIZES[model], dtype, seed=1)
            runs, reference = {}, None
            for fw in FRAMEWORKS:
                backend, training = get_backend(fw), training_module(fw)
                model_fw = backend.build(spec, seed=0, dtype=dtype)
                backend.load_weights(model_fw, weights)
                loss, grads = training.gradients(model_fw, x, labels)
                logits, stats = training.train_forward(model_fw, x)
                after = backend.export_weights(model_fw)  # gradients and train_forward leave the model unchanged
                assert all(np.array_equal(after[key], weights[key]) for key in weights), fw
                del model_fw, after
                if reference is None:
                    reference, diffs = grads, {}
                else:
                    same = list(grads) == list(reference)
                    diffs = relative_diffs(reference, grads, gradient_scales(spec, reference)) if same else {}
                runs[fw] = (loss, list(grads), diffs, logits, stats)
                del grads
            cache[model, dtype] = runs  # numpy results only: the models and gradients go
        return cache[model, dtype]

    return get


@pytest.mark.parametrize(("model", "dtype", "fw"), list(_gradient_cases()))
def test_gradients_train(gradient_runs, model, fw, dtype):
    """Loss, every gradient (canonical names and layouts) and the updated running statistics equal torch's."""
    runs = gradient_runs(model, dtype)
    loss, names, _, logits, stats = runs["torch"]
    other_loss, other_names, diffs, other_logits, other_stats = runs[fw]
    assert other_names == names
    assert abs(other_loss - loss) <= GRADIENT_BOUND[dtype] * abs(loss)
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= GRADIENT_BOUND[dtype], f"{worst}: {diffs[worst]:.2e}"
    assert np.max(np.abs(other_logits - logits)) <= GRADIENT_BOUND[dtype] * np.max(np.abs(logits))
    assert list(other_stats) == list(stats)
    stat_diffs = relative_diffs(stats, other_stats)
    assert max(stat_diffs.values(), default=0.0) <= GRADIENT_BOUND[dtype], stat_diffs


def test_regnet_train_running_var_is_unbiased(gradient_runs):
    """torch's running variance takes the unbiased batch variance, and so does every framework's: the stem
    BatchNorm's against numpy (its input, the stem conv's output, from ``parity.reference``)."""
    spec = get_spec("regnetx32")
    weights = start_weights(spec, "float64", seed=0)
    ((x, _),) = synthetic_batches(spec, 1, BATCH, MODELS["regnetx32"], "float64", seed=1)
    conv = next(node for node in spec.graph() if node.op == "conv" and node.layer.path == "stem.conv")
    y = reference.apply(conv, [x], weights)
    m = spec.bn_momentum
    expected = (1 - m) * weights["stem.bn.running_var"] + m * y.var(axis=(0, 2, 3), ddof=1)
    for fw in FRAMEWORKS:
        stats = gradient_runs("regnetx32", "float64")[fw][4]
        np.testing.assert_allclose(stats["stem.bn.running_var"], expected, rtol=1e-12, err_msg=fw)


def test_torch_train_steps_match_numpy_reference():
    """torch.optim's SGD and AdamW steps equal the numpy reference's formulas (torch's documented updates)."""
    rng = np.random.default_rng(0)
    for kind in ("sgd", "adamw"):
        spec = OptimizerSpec.default(kind)
        import torch

        w0 = rng.standard_normal(5)
        param = torch.nn.Parameter(torch.tensor(w0))
        trainer = (
            torch.optim.SGD([param], lr=spec.lr(0), momentum=spec.momentum, weight_decay=spec.weight_decay)
            if kind == "sgd"
            else torch.optim.AdamW(
                [param], lr=spec.lr(0), betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay
            )
        )
        state, weights = ReferenceState(), {"w": w0}
        for step in range(6):
            g = rng.standard_normal(5)
            trainer.param_groups[0]["lr"] = spec.lr(step)
            param.grad = torch.tensor(g)
            trainer.step()
            weights = reference_step(spec, weights, {"w": g}, state)
            np.testing.assert_allclose(param.detach().numpy(), weights["w"], rtol=1e-13)


# RegNetX32's convs keep a bias before BatchNorm (d2l's; ``zero_gradient_biases`` finds them in the graph), whose
# exact gradient is 0: each framework returns rounding residue r instead, never exactly 0 (measured: up to 4.5e-15
# of the BatchNorm shift's largest gradient S ~ 3.7), which the float64 gradient bound holds to r <= 1e-9 * S
# (checked at every step). AdamW's step on such a bias is then ~ lr * m_hat / eps (sqrt(v_hat) ~ r << eps = 1e-8),
# ~1e-8 of the bias, differently signed in each framework: beyond TOLERANCE, though no port differs. Those biases
# and their running means are judged within ``parity.training.run.ResidueBound`` (derived from AdamW's formula there)
# on top of TOLERANCE, as ``parity train-check`` judges them; every other tensor within TOLERANCE alone (measured
# 5.4e-12). The gradient bound alone (R <= 1e-9 * S) would allow 7e-4 per step, more than a port error: the bound
# takes the residues each framework applied. Measured (6 steps): the bias differences reach 0.91 of it (step 0, where
# both moves are exactly lr * r / eps and two residues of opposite sign add up), the running means 0.51; it reaches
# 5.3e-8 of the bias, 34 times below the 1.8e-6 by which a bias left out of AdamW's decay moves (asserted: below a
# tenth). For SGD the residue moves a bias by lr * r ~ 1e-17: every tensor keeps TOLERANCE.
STEPS = 6


def _k_step(model: str, kind: str):
    """6 steps, the rate changing after 3: each framework's loss, weights and running statistics against torch's,
    every tensor within TOLERANCE, AdamW's zero-gradient biases and their running means within ``ResidueBound``."""
    spec, optimizer = get_spec(model), OptimizerSpec.default(kind)
    assert len({optimizer.lr(step) for step in range(STEPS)}) > 1  # the rate changes mid-way
    biases = zero_gradient_biases(spec)
    residue = {fw: ResidueBound(spec, optimizer) for fw in OTHERS}
    for step, _, trained in training_steps(spec, optimizer, STEPS, "float64", batch=BATCH, size=MODELS[model]):
        if step < 0:
            continue
        reference = trained["torch"]
        for fw, one in trained.items():
            assert abs(one.loss - reference.loss) <= 1e-9 * abs(reference.loss), f"{fw} step {step}: loss"
            for bias, bn in biases.items():  # the residue, within the float64 gradient bound
                shift = np.max(np.abs(one.grads[f"{bn.path}.bias"]))
                assert np.max(np.abs(one.grads[bias])) <= GRADIENT_BOUND["float64"] * shift, f"{fw} step {step}"
        for fw in OTHERS:
            bounds = residue[fw].step(step, reference.grads, trained[fw].grads)
            verdict = judge(reference.after, trained[fw].after, "float64", bounds)
            assert not verdict.over, f"{fw} step {step}: {verdict}"
    decay = optimizer.weight_decay * sum(optimizer.lr(step) for step in range(STEPS))
    for fw in OTHERS:
        for bias in residue[fw].biases:
            assert residue[fw].bounds[bias] <= decay / 10 * np.max(np.abs(reference.after[bias])), f"{fw} {bias}"


@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_residual_mnist_k_steps_train(kind):
    """6 steps, the rate changing after 3: weights and running statistics of all four within TOLERANCE of torch's."""
    _k_step("residual_mnist", kind)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "kind"),
    [
        ("inception_mnist", "sgd"),
        ("inception_mnist", "adamw"),
        ("regnetx32", "sgd"),
        ("regnetx32", "adamw"),
        ("googlenet", "sgd"),
        ("googlenet", "adamw"),
    ],
)
def test_k_steps_train_slow(model, kind):
    _k_step(model, kind)


@pytest.mark.parametrize("fw", OTHERS)
def test_unsupported_option_train_refused(fw):
    """An option that a framework's optimizer cannot express is refused, naming the framework and the option."""
    spec, backend = get_spec("residual_mnist"), get_backend(fw)
    model = backend.build(spec, dtype="float64")
    with pytest.raises(UnsupportedOption, match=f"^{fw}: .*dampening=0.5"):
        training_module(fw).Trainer(model, OptimizerSpec(dampening=0.5))


def test_nonfinite_gradient_train_reported():
    """A NaN gradient is reported with its step and tensor."""
    with pytest.raises(NonFinite, match="jax: gradient fc.weight at step 3 has 1 NaN/Inf"):
        check_finite({"fc.bias": np.zeros(2), "fc.weight": np.array([0.0, np.nan])}, "gradient", "jax", 3)


@pytest.mark.parametrize(
    ("model", "fw", "variant", "kind", "first"),
    [
        ("bnlenet", "jax", "bn_momentum_as_torch", "sgd", (0, "running statistic")),
        ("bnlenet", "tf", "biased_running_var", "sgd", (0, "running statistic")),
        ("residual_mnist", "tf", "decoupled_sgd_decay", "sgd", (1, "weight")),  # step 1 is the same in both
        ("residual_mnist", "mxnet", "velocity_momentum", "sgd", (3, "weight")),  # the rate changes at step 3
        ("residual_mnist", "mxnet", "no_rescale_grad", "adamw", (0, "gradient")),
    ],
)
def test_explain_train_names_each_pitfall(model, fw, variant, kind, first):
    """Each naive training port diverges from torch beyond the float64 bound, on the smallest net it applies to
    (BNLeNet: the smallest with BatchNorm), at the step and kind of tensor its formula first changes; the cause
    is the one formula whose numpy replay reproduces B's tensors, and the faithful replay does not."""
    optimizer, size = OptimizerSpec.default(kind), MODELS.get(model)
    result = explain_train(get_spec(model), "torch", fw, variant, "float64", optimizer, batch=BATCH, size=size)
    assert result.first[:2] == first
    assert result.cause == variant
    replays = {r.formula: r.max_rel for r in result.replays}
    assert replays["faithful"] > TOLERANCE["float64"]
    assert min(replays.values()) <= TOLERANCE["float64"]


def test_explain_train_faithful_port_does_not_diverge():
    result = explain_train(get_spec("residual_mnist"), "torch", "mxnet", batch=BATCH, size=MODELS["residual_mnist"])
    assert not result.diverged and len(result.steps) == 6


def test_train_check_cli_exit_codes(capsys):
    from parity.cli import main

    args = ["train-check", "residual_mnist", "--steps", "4", "--frameworks", "torch,jax", "--batch", str(BATCH)]
    assert main(args) == 0
    assert "loss jax" in capsys.readouterr().out
    assert main(["train-check", "residual_mnist", "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err


def test_explain_train_cli_exit_codes(capsys):
    from parity.cli import main

    explain = ["explain", "residual_mnist", "--from", "torch", "--to", "mxnet", "--train"]
    assert main([*explain, "--variant", "velocity_momentum"]) == 1
    assert "hint: velocity_momentum" in capsys.readouterr().out
    assert main([*explain, "--variant", "decoupled_sgd_decay"]) == 2  # a Keras pitfall
    assert "--variant: decoupled_sgd_decay is a pitfall of tf" in capsys.readouterr().err
