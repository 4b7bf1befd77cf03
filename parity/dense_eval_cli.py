"""``parity dense-eval MODEL --weights FILE --input-size H,W``: dense evaluation in several frameworks.

MODEL's dense head becomes convolutions (``parity.dense_eval.conv_form``); each framework runs the fully
convolutional net on one random NCHW input of H x W. Printed side by side: each framework's score-map shape
and top classes (the map's spatial mean, ``class_scores``), and whether the frameworks agree: every score
map within ``parity.harness.TOLERANCE`` of the first framework's, as ``parity compare`` holds logits.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.table import Table

from parity.convert import ConvertError, one_line, weights_dtype
from parity.dense_eval import class_scores, conv_form, score_maps, top_classes
from parity.specs import Architecture, FullyConvolutional, conv_head_problem, spatial_size_problem
from parity.weights import Weights, WeightsError, WeightsFileError, cast, load_weights


class DenseEvalError(ValueError):
    """A dense evaluation that cannot run as asked; one line naming the option at fault."""


@dataclass(frozen=True)
class DenseEvaluation:
    """Each framework's score map of one input; the first framework's is the reference."""

    spec: FullyConvolutional
    input_shape: tuple[int, ...]
    dtype: str
    maps: dict[str, np.ndarray]

    @property
    def reference(self) -> str:
        return next(iter(self.maps))

    def diffs(self) -> dict[str, tuple[float, float, bool]]:
        """{framework: (max |diff|, relative, within tolerance)} of its score map against the reference's."""
        from parity.harness import logit_diff

        reference = self.maps[self.reference]
        return {fw: logit_diff(reference, m, self.dtype) for fw, m in self.maps.items() if fw != self.reference}

    @property
    def passed(self) -> bool:
        return all(passed for _, _, passed in self.diffs().values())


def torchvision_model(spec: Architecture) -> str | None:
    """The torchvision name of a ``tv_*`` spec, or None."""
    from parity import torchvision_io

    try:
        return torchvision_io.model_for(spec)
    except KeyError:
        return None


def read_weights(spec: Architecture, path: str) -> Weights:
    """Canonical weights of ``spec`` or of its fully convolutional form from canonical safetensors or, for
    a torchvision spec, from torchvision's state_dict (``.pth``/``.pt``, or ``.safetensors`` with its names)."""
    from parity import torchvision_io

    torchvision = torchvision_model(spec)
    suffixes = torchvision_io.FILE_SUFFIXES if torchvision else (".safetensors",)
    if not path.endswith(suffixes):
        raise DenseEvalError(f"--weights: expected a {' or '.join(suffixes)} file for {spec.name}, got {path!r}")
    if not os.path.isfile(path):
        raise DenseEvalError(f"--weights: no such file {path!r}")
    try:
        if path.endswith(".safetensors"):
            weights = load_weights(path)
            if not torchvision or not set(weights) & set(torchvision_io.expected_shapes(spec)):
                return weights  # canonical names, the same in both forms
        else:
            weights = torchvision_io.read_state_dict(path)
        return torchvision_io.state_dict_to_canonical(weights, spec)
    except WeightsFileError as error:  # names the file already
        raise DenseEvalError(f"--weights {one_line(error)}") from None
    except WeightsError as error:
        raise DenseEvalError(f"--weights {path}: {one_line(error)}") from None


def evaluate(
    spec: Architecture,
    path: str,
    frameworks: Sequence[str],
    size: tuple[int, int],
    dtype: str | None = None,
    seed: int = 0,
    progress: Callable[[str], None] = lambda message: None,
) -> DenseEvaluation:
    """``spec``'s fully convolutional net with the weights in ``path`` (cast to ``dtype``; the file's own by
    default) run by each framework on one random (1, C, *size) input drawn from ``seed``."""
    problem = conv_head_problem(spec)
    if problem:
        raise DenseEvalError(f"MODEL: {problem}")
    conv = FullyConvolutional(spec)
    problem = spatial_size_problem(conv, *size)
    if problem:
        raise DenseEvalError(f"--input-size: {problem}")
    progress("reading the weights")
    weights = read_weights(spec, path)
    try:
        conv, weights = conv_form(spec, weights)
        dtype = weights_dtype(weights, dtype)
        weights = cast(weights, dtype)
    except ConvertError as error:
        raise DenseEvalError(str(error)) from None
    except WeightsError as error:
        raise DenseEvalError(f"--weights {path}: {one_line(error)}") from None
    x = np.random.default_rng(seed).standard_normal((1, spec.in_channels, *size)).astype(dtype)
    return DenseEvaluation(conv, x.shape, dtype, score_maps(conv, weights, frameworks, x, progress))


def side_by_side(evaluation: DenseEvaluation, top: int) -> Table:
    """Per framework (a column): the score map's shape, the top classes with their scores, the difference."""
    table = Table(
        title=f"{evaluation.spec.name}, input {evaluation.input_shape} (NCHW), {evaluation.dtype}", title_justify="left"
    )
    table.add_column("")
    for framework in evaluation.maps:
        table.add_column(framework, justify="right")
    table.add_row("score map", *(str(m.shape) for m in evaluation.maps.values()))
    best = [top_classes(class_scores(m)[0], top) for m in evaluation.maps.values()]
    for rank, row in enumerate(zip(*best, strict=True), start=1):
        table.add_row(f"top {rank} (class: mean)", *(f"{c}: {score:.5g}" for c, score in row))
    diffs = evaluation.diffs()
    table.add_row(
        f"max |diff| vs {evaluation.reference}",
        *(f"{diffs[fw][0]:.3e}" if fw in diffs else "reference" for fw in evaluation.maps),
    )
    return table


def run_dense_eval(
    args: argparse.Namespace, spec: Architecture, frameworks: Sequence[str], size: tuple[int, int], console: Console
) -> int:
    """Evaluate, print the table and the verdict; 0 when the frameworks agree, 1 when some diverge."""
    from parity.harness import tolerance_text

    if len(frameworks) < 2:
        raise DenseEvalError("--frameworks: a dense evaluation compares at least two frameworks")
    if not 1 <= args.top <= spec.num_classes:
        raise DenseEvalError(f"--top: expected 1 to {spec.num_classes} (the classes of {spec.name}), got {args.top}")
    with Console(stderr=True).status("dense evaluation") as status:
        evaluation = evaluate(spec, args.weights, frameworks, size, args.dtype, args.seed, status.update)
    console.print(side_by_side(evaluation, args.top))
    need = f"need {tolerance_text(evaluation.dtype)}"
    if evaluation.passed:
        console.print(f"[bold green]PASS[/]: the frameworks agree with {evaluation.reference}'s score map ({need})")
        return 0
    diverged = ", ".join(fw for fw, (_, _, passed) in evaluation.diffs().items() if not passed)
    console.print(f"[bold red]FAIL[/]: {diverged} diverge from {evaluation.reference}'s score map ({need})")
    return 1
