import json

import pytest

from parity import cli
from support import hide_framework


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["compare", "regnetx33"],
            "unknown model 'regnetx33'; known models: alexnet, bnlenet, densenet, googlenet, inception_mnist, "
            "lenet, nin, regnetx32, regnetx_16gf",
        ),
        (["compare", "regnetx32", "--frameworks", "torch,caffe"], "unknown framework 'caffe'"),
        (["compare", "regnetx32", "--frameworks", "torch"], "needs at least two frameworks"),
        (["compare", "regnetx32", "--frameworks", "torch,torch"], "names a framework twice"),
        (["compare", "regnetx32", "--batch", "0"], "--batch: expected a positive integer"),
        (["compare", "regnetx32", "--input-size", "96"], "--input-size: expected 2 positive integers"),
        (["summary", "regnetx32", "--input-shape", "1,1,x,96"], "--input-shape: expected 4 positive integers"),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_a_framework_that_is_not_installed_names_its_extra(capsys, monkeypatch):
    hide_framework(monkeypatch, cli, "mxnet", "no module named mxnet")
    code, _, err = run(capsys, "compare", "regnetx32")
    assert code == 2 and "mxnet is not installed: pip install -e '.[mxnet]'" in err


def test_compare_json_reports_every_directed_transfer(capsys):
    code, out, _ = run(
        capsys,
        "compare",
        "regnetx32",
        "--frameworks",
        "torch,mxnet",
        "--input-size",
        "33,21",
        "--json",
        "--dtype",
        "float64",
    )
    report = json.loads(out)
    assert code == 0 and report["passed"]
    assert {(t["src"], t["dst"]) for t in report["transfers"]} == {("torch", "mxnet"), ("mxnet", "torch")}
    assert report["summaries"]["mxnet"][-1]["shape_nchw"] == [2, 10]


def test_summary_prints_d2l_lines_and_the_side_by_side_table(capsys):
    code, out, _ = run(capsys, "summary", "regnetx32", "--frameworks", "torch,mxnet")
    assert code == 0
    assert "Sequential output shape:\t torch.Size([1, 32, 48, 48])" in out
    assert "GlobalAvgPool2D output shape:\t (1, 80, 1, 1)" in out
    assert "stages.1" in out and "179,290" not in out and "149,200" in out


def test_compare_exits_1_and_says_fail_when_a_transfer_is_out_of_tolerance(capsys, monkeypatch):
    from parity import harness

    # float32 transfers between frameworks are not bit-identical, so a zero bound must fail them
    monkeypatch.setitem(harness.TOLERANCE, "float32", ("rel", 0.0))
    code, out, _ = run(capsys, "compare", "regnetx32", "--frameworks", "torch,mxnet", "--input-size", "33,21")
    assert code == 1 and "FAIL" in out and "0/2 transfers within tolerance" in out
