"""A quiet TensorFlow start for the command line.

TensorFlow writes C++ log lines to stderr on a machine without a GPU (oneDNN's notice, ``Could not find
cuda drivers``, ``failed call to cuInit``). ``TF_CPP_MIN_LOG_LEVEL=3`` silences those written once its
logging is set up, but not the ones its libraries write while they load, before absl's logging is
initialised, whatever the environment says. So ``quiet_tensorflow`` does two things, before TensorFlow is
imported: it sets the level (unless the user has), and it runs the import of ``tensorflow`` with the
process's stderr (file descriptor 2, where C++ writes) sent to a temporary file, then writes back every
line of it that is not such a log line, so a warning or an error from the import still shows.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Iterator

# absl's and TensorFlow's C++ log lines: severity, date, time, thread, file:line]; and absl's notice before them
LOG_LINE = re.compile(
    rb"[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.-]+:\d+\] "
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
)


def quiet_tensorflow() -> None:
    """Make a later ``import tensorflow`` in this process write no C++ log lines to stderr."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Everything written to file descriptor 2 meanwhile, but C++ log lines, is written to it afterwards."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().splitlines(keepends=True) if not LOG_LINE.match(line)]
            if kept:
                os.write(2, b"".join(kept))


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` as the other finders do, with a loader that runs it inside ``filtered_stderr``."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        for finder in sys.meta_path:
            spec = None if finder is self else finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _QuietLoader(spec.loader, self)
                return spec
        return None


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, finder: _QuietImport) -> None:
        self.loader, self.finder = loader, finder

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self.finder)  # once imported, tensorflow is found in sys.modules
        with filtered_stderr():
            self.loader.exec_module(module)
