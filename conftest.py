"""pytest-xdist's workers share the machine's cores: each worker's frameworks get ``cores // workers``
compute threads (at least one) instead of every core each, so that two workers on two cores do not
run four busy threads. Set before any framework is imported; a thread setting already made is kept."""

import os

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


def pytest_configure(config):
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers < 2:
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, str(threads))
    if threads == 1:  # XLA's CPU client has no thread-count variable, only these flags for one thread
        os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
