"""``parity compare --device``: every framework placed on the CPU, or on the first GPU where it sees one
(``parity.devices``). Here, without a GPU, the CPU placement runs and the GPU request is refused; the GPU
matrix runs where a GPU is seen, and is skipped, with the reason, elsewhere."""

import json

import numpy as np
import pytest

from parity import cli
from parity.backends import get_backend, installed_frameworks
from parity.devices import DeviceUnavailable, placed
from parity.harness import compare
from parity.specs import get_spec

FRAMEWORKS = installed_frameworks()


def seen_on_gpu() -> tuple[list[str], str]:
    """(the installed frameworks that see a GPU, why each of the others does not)."""
    seen, why = [], []
    for framework in FRAMEWORKS:
        try:
            with placed([framework], "gpu"):
                seen.append(framework)
        except DeviceUnavailable as error:
            why.append(str(error))
    return seen, "; ".join(why)


def where(framework: str, model) -> set[str]:
    """The devices that hold the model's tensors, as the framework names them."""
    if framework == "torch":
        return {str(t.device) for t in model.state_dict().values()}
    if framework == "jax":
        import jax

        return {str(device) for leaf in jax.tree.leaves(model.variables) for device in leaf.devices()}
    if framework == "tf":
        return {variable.value.device.rsplit("/", 1)[-1] for variable in model.weights}
    return {str(param.data().context) for param in model.collect_params().values()}


def test_cpu_placement_builds_every_framework_on_the_cpu():
    spec = get_spec("regnetx32")
    with placed(FRAMEWORKS, "cpu") as names:
        models = {framework: get_backend(framework).build(spec) for framework in FRAMEWORKS}
    assert list(names) == FRAMEWORKS
    expected = {"torch": {"cpu"}, "jax": {"TFRT_CPU_0"}, "tf": {"device:CPU:0"}, "mxnet": {"cpu(0)"}}
    assert {framework: where(framework, model) for framework, model in models.items()} == {
        framework: expected[framework] for framework in FRAMEWORKS
    }


def test_compare_on_the_cpu_reports_where_each_framework_ran(capsys):
    if len(FRAMEWORKS) < 2:
        pytest.skip("a comparison needs two installed frameworks")
    frameworks = ",".join(FRAMEWORKS)
    code = cli.main(["compare", "regnetx32", "--input-size", "32,32", "--frameworks", frameworks, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["passed"]
    assert report["device"] == "cpu" and list(report["placements"]) == FRAMEWORKS
    assert "torch" not in report["placements"] or report["placements"]["torch"] == "cpu"


def test_a_device_without_the_framework_is_refused_by_name_before_anything_is_built(capsys):
    seen, _ = seen_on_gpu()
    missing = [framework for framework in FRAMEWORKS if framework not in seen]
    if not missing:
        pytest.skip("every installed framework sees a GPU here")
    code = cli.main(["compare", "regnetx32", "--frameworks", ",".join(FRAMEWORKS), "--device", "gpu"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith(f"parity: error: --device gpu: {missing[0]} ") and err.count("\n") == 1


def test_an_unknown_device_is_named():
    with pytest.raises(ValueError, match="device: expected one of cpu, gpu, got 'tpu'"):
        with placed(FRAMEWORKS, "tpu"):
            pass


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("model", "size"), [("regnetx32", (96, 96)), ("regnetx_400mf", (224, 224))])
def test_gpu_matrix(model, size, dtype):
    """The parity matrix on the GPU: every framework that sees one, float64 included (README, "On a GPU")."""
    seen, why = seen_on_gpu()
    if len(seen) < 2:
        pytest.skip(f"fewer than two frameworks see a GPU here: {why}")
    spec = get_spec(model)
    x = np.random.default_rng(0).standard_normal((2, spec.in_channels, *size)).astype(dtype)
    report = compare(spec, seen, x, dtype, device="gpu")
    assert all("cpu" not in name.lower() for name in report.placements.values()), report.placements
    failed = [f"{t.src}->{t.dst} {t.max_abs:.2e} ({t.max_rel:.2e})" for t in report.transfers if not t.passed]
    assert not failed, failed
