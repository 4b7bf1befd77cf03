"""The command line starts without TensorFlow's or XLA's C++ log lines on stderr (``parity.quiet``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from parity.quiet import LOG_LINE

ROOT = Path(__file__).parents[1]


def test_a_tf_command_writes_no_cpp_log_lines():
    command = [
        sys.executable,
        "-m",
        "parity.cli",
        "summary",
        "lenet",
        "--frameworks",
        "jax,tf",
    ]  # jax first: it sets the level to 1 unless set
    # as a user starts it: TensorFlow's log level unset (importing impl_tf in this process sets it)
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    logged = [line for line in done.stderr.splitlines() if LOG_LINE.match(line) or b"cuInit" in line]
    assert logged == [], logged


def test_the_filter_keeps_other_stderr_lines():
    """Only log lines are dropped: a Python warning written during the import still shows."""
    code = (
        "import os\nfrom parity.quiet import filtered_stderr\nwith filtered_stderr():\n"
        "    os.write(2, b'I0000 00:00:1796225143.487756   14942 port.cc:153] oneDNN custom operations are on\\n')\n"
        "    os.write(2, b'UserWarning: kept\\n')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, timeout=60)
    assert done.stderr == b"UserWarning: kept\n", done.stderr
