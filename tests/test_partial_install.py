"""Frameworks that are not installed (here TF and MXNet, hidden from the import system in a subprocess): their
tests are skipped with a reason naming the pip extra, the CI step (.ci/run) runs the installed pairs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
HIDE = """
import sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("mxnet", "tensorflow", "keras"):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, Hide())
"""


def test_tests_of_a_missing_framework_are_skipped_naming_its_extra(tmp_path):
    (tmp_path / "hide_frameworks.py").write_text(HIDE)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-n",
        "0",
        "-p",
        "no:cacheprovider",
        "-p",
        "hide_frameworks",
        "-rs",
        "-q",
    ]
    command += ["parity/test_regnet.py", "-k", "summary_reproduces_d2l_book and (tf or mxnet)"]
    env = {"PYTHONPATH": str(tmp_path), "PATH": ""}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "tf is not installed: pip install -e '.[tf]'" in done.stdout, done.stdout[-2000:]
    assert "mxnet is not installed: pip install -e '.[mxnet]'" in done.stdout, done.stdout[-2000:]
    assert "2 skipped" in done.stdout and "passed" not in done.stdout, done.stdout[-2000:]
