"""``parity bench``: the structure of its results on a tiny configuration, and its usage errors.

No timing is asserted: the numbers depend on the machine and its load.
"""

import functools
import json
import statistics
import sys

import pytest

from parity import bench, cli
from support import hide_framework


@pytest.fixture
def without_mxnet(monkeypatch):
    hide_framework(monkeypatch, bench, "mxnet", "the mxnet backend needs its framework: pip install -e '.[mxnet]'")


def test_forward_bench_reports_every_contender_with_ratios_to_the_reference(capsys, monkeypatch, without_mxnet):
    # the command on a tiny configuration: RegNetX32 at 32x32, batch 2, rounds of 10 ms
    tiny = functools.partial(bench.run, models={"regnetx32": (32, 32)}, batches=(2,), round_seconds=0.01)
    monkeypatch.setattr(bench, "run", tiny)
    code = cli.main(["bench", "--only", "forward", "--frameworks", "torch,mxnet", "--rounds", "2", "--json", "-"])
    out, shown = capsys.readouterr()
    result = json.loads(out)  # stdout holds the JSON alone
    assert code == 0

    head = result["header"]
    assert {"torch", "torchvision", "jax", "flax", "tensorflow", "keras", "mxnet", "numpy", "python"} <= set(
        head["versions"]
    )
    assert head["versions"]["torch"] and head["machine"]["cores"] >= 1 and "torch" in head["threads"]
    assert head["frameworks"]["torch"] == "available"
    assert "pip install -e '.[mxnet]'" in head["frameworks"]["mxnet"]
    assert "build" not in result and "convert" not in result

    assert [(case["model"], case["input"]) for case in result["forward"]] == [("regnetx32", [2, 1, 32, 32])]
    for case in result["forward"]:
        assert case["reference"] == "impl_torch module"  # torchvision has no RegNetX32
        results = case["results"]
        assert list(results) == [bench.REFERENCE, "torch", "mxnet"]
        assert "pip install" in results["mxnet"]["unavailable"]
        base = results[bench.REFERENCE]["img_s"]
        for name in (bench.REFERENCE, "torch"):
            measured = results[name]
            assert len(measured["rounds_img_s"]) == 2 and min(measured["rounds_img_s"]) > 0
            assert measured["img_s"] == statistics.median(measured["rounds_img_s"])
            assert measured["ratio"] == measured["img_s"] / base
    assert results[bench.REFERENCE]["ratio"] == 1.0

    assert shown.startswith("machine: ") and "mxnet: unavailable" in shown
    assert "2x1x32x32" in shown and "impl_torch module" in shown


def test_build_runs_each_backend_in_a_fresh_process(without_mxnet):
    rows = bench.build_section(["torch", "mxnet"], bench.import_backends(["torch", "mxnet"]), {"regnetx32": (32, 32)})
    torch_row, mxnet_row = rows
    assert torch_row["input"] == [1, 1, 32, 32] and "error" not in torch_row
    assert all(torch_row[column] > 0 for column in bench.BUILD_COLUMNS)
    assert all(torch_row["cached"][column] > 0 for column in bench.BUILD_COLUMNS)
    assert torch_row["process_s"] > torch_row["import_s"] + torch_row["build_s"] + torch_row["first_call_s"]
    assert "pip install" in mxnet_row["unavailable"]


def test_a_measured_command_reports_its_own_peak_memory_not_this_process(tmp_path):
    # Linux hands a process's peak RSS on to a child it starts, and this one peaks above 512 MiB; the
    # command inherits only the small measuring process's peak (~40 MiB: Python, numpy), below 64 MiB
    ballast = bytearray(512 * 2**20)
    ballast[:: 2**12] = b"x" * len(ballast[:: 2**12])  # resident
    python = [sys.executable, "-c"]
    bare = bench.measured([*python, "pass"], tmp_path)
    assert bare["exit_code"] == 0 and bare["peak_kib"] < 64 * 2**10
    allocating = bench.measured([*python, "b = bytearray(256 * 2**20); b[::4096] = b'x' * 65536"], tmp_path)
    assert allocating["peak_kib"] > 256 * 2**10
    failing = bench.measured([*python, "import os, sys; print(os.environ['PARITY_CACHE_DIR']); sys.exit(3)"], tmp_path)
    assert failing["exit_code"] == 3 and failing["output"] == [str(tmp_path)]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "--rounds", "0"], "--rounds: expected a positive integer, got 0"),
        (["bench", "--frameworks", "torch,caffe"], "--frameworks: expected distinct names from torch,jax,tf,mxnet"),
        (["bench", "--frameworks", "torch,torch"], "got 'torch,torch'"),
        (["bench", "--json", "no/such/folder/bench.json"], "--json: no such directory 'no/such/folder'"),
    ],
)
def test_bad_options_exit_2_with_one_line_before_measuring(capsys, argv, message):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_an_unknown_section_is_refused_by_name(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["bench", "--only", "fast"])
    assert exit_.value.code == 2
    assert "--only: invalid choice: 'fast' (choose from 'forward', 'build', 'convert')" in capsys.readouterr().err
