"""``parity bench``: how fast the backends run, build and convert, on this machine, in one run.

Three sections (``--only`` picks some):

- **forward**: img/s at batch 1 and 8 of RegNetX32 at 96x96 and RegNetX-400MF at 224x224 through
  each backend's ``forward``, against a reference run the plain PyTorch way (``model(x)`` under
  ``torch.inference_mode()``): torchvision's ``regnet_x_400mf``, and for RegNetX32, which
  torchvision lacks, impl_torch's module itself. Each contender runs in a process of its own (see
  ``forward_section``). After two warm-up calls (the first compiles), the contenders take turns in
  every round, each running for about ``ROUND_SECONDS`` in an order that rotates from round to
  round, so that machine noise hits all of them alike; img/s is the median over the rounds and each
  ratio is to the reference's img/s of the same run.
- **build**: seconds to import a backend, ``build`` a model and make its first (compiling) and
  second forward call, each backend and model in a fresh process with an empty project cache folder
  (``PARITY_CACHE_DIR``), as on a first run, so no cache of an earlier build helps; then again in a
  second process on the cache the first one filled, as on any later run.
- **convert**: ``parity convert --from torchvision:regnet_x_32gf --weights FILE --to FW`` as a
  user runs it the first time (a 412 MiB ``torch.save`` checkpoint of random weights, the logit
  check on, an empty cache folder): wall seconds and peak memory of the whole command, the peak
  taken above that of a process that only imports the same modules, as a multiple of the
  checkpoint's size.

Run as ``python -m parity.bench``, this module is the child processes of the last two sections.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from parity import native
from parity.backends import BackendUnavailable, get_backend
from parity.specs import get_spec

SECTIONS = ("forward", "build", "convert")
ROUNDS = 5
FORWARD_MODELS = {"regnetx32": (96, 96), "regnetx_400mf": (224, 224)}
BATCHES = (1, 8)
ROUND_SECONDS = 0.5
REFERENCE = "reference"

CONVERT_MODEL = "regnet_x_32gf"
TARGET_SECONDS = 15.0
TARGET_MEMORY = 3.0  # peak above the import baseline, in checkpoint sizes

PACKAGES = ("torch", "torchvision", "jax", "jaxlib", "flax", "tensorflow", "keras", "mxnet", "numpy")
THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "MKL_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
    "XLA_FLAGS",
    "MXNET_CPU_WORKER_NTHREADS",
    "MXNET_ENGINE_TYPE",
)

Show = Callable[[Any], None]


def progress(total: int, description: str):
    """A progress bar on stderr, shown only when it is a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, file=sys.stderr, disable=None, leave=False)


def import_backends(frameworks: Iterable[str]) -> dict[str, str]:
    """Import the backends of ``frameworks``; {framework: why it does not import} for those that do not.

    torchvision goes first: after tensorflow it kills the process (see ``parity.convert.prepare``).
    Importing mxnet sets OpenMP's thread count, and with it torch's, to 1; torch's is set back, so that
    torch runs as it does in a process without mxnet.
    """
    try:
        import torch
        import torchvision  # noqa: F401

        torch_threads = torch.get_num_threads()
    except ImportError:
        torch_threads = None
    missing = {}
    for framework in frameworks:
        try:
            get_backend(framework)
        except BackendUnavailable as error:
            missing[framework] = str(error)
    if torch_threads:
        torch.set_num_threads(torch_threads)
    return missing


# ---------------------------------------------------------------- header


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def versions() -> dict[str, str | None]:
    """{package: installed version, or None}, read from the installed metadata (nothing imported)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def thread_counts(frameworks: Sequence[str], missing: Mapping[str, str]) -> dict[str, Any]:
    """torch's and TensorFlow's thread pools (TF's 0: it picks, one per core) and the thread variables set."""
    counts: dict[str, Any] = {"env": {name: os.environ[name] for name in THREAD_ENV if name in os.environ}}
    with contextlib.suppress(ImportError):
        import torch

        counts["torch"] = {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
    if "tf" in frameworks and "tf" not in missing:
        import tensorflow as tf

        threading = tf.config.threading
        counts["tf"] = {
            "intra_op": threading.get_intra_op_parallelism_threads(),
            "inter_op": threading.get_inter_op_parallelism_threads(),
        }
    return counts


def header(frameworks: Sequence[str], missing: Mapping[str, str]) -> dict[str, Any]:
    return {
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)),
            "load_average": os.getloadavg(),  # other processes' share of the cores, over 1, 5 and 15 minutes
        },
        "threads": thread_counts(frameworks, missing),
        "versions": versions(),
        "frameworks": {fw: missing.get(fw, "available") for fw in frameworks},
    }


def header_lines(head: Mapping[str, Any]) -> str:
    machine, threads = head["machine"], head["threads"]
    pools = [f"{fw} {t['intra_op']} intra-op, {t['inter_op']} inter-op" for fw, t in threads.items() if fw != "env"]
    env = [f"{name}={value}" for name, value in threads["env"].items()] or ["no thread variable set"]
    installed = [f"{name} {version}" for name, version in head["versions"].items() if version]
    absent = [name for name, version in head["versions"].items() if not version]
    lines = [
        f"machine: {machine['cpu']}, {machine['cores']} cores ({machine['usable_cores']} usable), "
        f"load average {' '.join(f'{load:.2f}' for load in machine['load_average'])}",
        f"threads: {'; '.join(pools + env)}",
        f"versions: {', '.join(installed)}" + (f" (not installed: {', '.join(absent)})" if absent else ""),
    ]
    if machine["load_average"][0] >= machine["usable_cores"]:
        lines.append("the other processes on this machine keep its cores busy: expect noisy numbers")
    lines += [f"{fw}: unavailable: {why}" for fw, why in head["frameworks"].items() if why != "available"]
    return "\n".join(lines)


# ---------------------------------------------------------------- forward throughput


def plain_torch(module: Any) -> Callable[[np.ndarray], np.ndarray]:
    """``module(x)`` under ``torch.inference_mode()``, numpy in and out."""
    import torch

    def forward(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    return forward


def reference(spec) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """(what it is, forward): torchvision's model of ``spec``, or impl_torch's module where torchvision has none."""
    from parity import torchvision_io

    try:
        name = torchvision_io.model_for(spec)
    except KeyError:
        return "impl_torch module", plain_torch(get_backend("torch").build(spec))
    return f"torchvision {name}", plain_torch(torchvision_io.BACKEND.build(spec))


def contender(name: str, spec) -> tuple[str, Callable[[np.ndarray], Any]]:
    """(what it is, forward) of the reference or of a framework's backend."""
    if name == REFERENCE:
        return reference(spec)
    backend = get_backend(name)
    return name, functools.partial(backend.forward, backend.build(spec))


def contender_process(name: str, connection) -> None:
    """One contender's process: builds each model it is sent, then answers timing requests until ``stop``.

    Requests: ``("prepare", model, x_shape)``: build (once per model), two warm-up calls on a seeded
    input (the first compiles), reply ``("ready", description, seconds of the second call)``;
    ``("run", calls)``: reply the seconds that many calls take. Any failure is replied as
    ``("error", message)``; a missing torchvision as ``("unavailable", message)``.
    """
    built: dict[str, tuple[str, Callable]] = {}
    x = None
    while True:
        request, *arguments = connection.recv()
        try:
            if request == "stop":
                return
            if request == "prepare":
                model, shape = arguments
                if model not in built:
                    built[model] = contender(name, get_spec(model))
                described, forward = built[model]
                x = np.random.default_rng(0).standard_normal(shape, "float32")
                forward(x)
                start = time.perf_counter()
                forward(x)
                connection.send(("ready", described, time.perf_counter() - start))
            elif request == "run":
                (calls,) = arguments
                start = time.perf_counter()
                for _ in range(calls):
                    forward(x)
                connection.send(("seconds", time.perf_counter() - start))
        except ImportError as error:
            connection.send(("unavailable", f"the reference needs torch and torchvision ({error})"))
        except Exception as error:  # reported by the parent, which names the contender
            connection.send(("error", f"{type(error).__name__}: {error}"))


class Contenders:
    """The contenders' processes, started with this process's environment (``spawn``: nothing inherited but
    it) and stopped on exit; ``ask(name, *request)`` sends a request and returns the reply."""

    def __init__(self, names: Iterable[str]) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._connections = {}
        self._processes = []
        for name in names:
            ours, theirs = context.Pipe()
            process = context.Process(target=contender_process, args=(name, theirs), daemon=True)
            process.start()
            self._connections[name] = ours
            self._processes.append(process)

    def ask(self, name: str, *request: Any) -> tuple:
        connection = self._connections[name]
        connection.send(request)
        reply = connection.recv()
        if reply[0] == "error":
            raise RuntimeError(f"{name}'s forward failed in its benchmark process: {reply[1]}")
        return reply

    def __enter__(self) -> Contenders:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for connection in self._connections.values():
            with contextlib.suppress(OSError):
                connection.send(("stop",))
        for process in self._processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()


def throughput(
    contenders: Contenders, names: Sequence[str], rounds: int, batch: int, calls: Mapping[str, int], tick
) -> dict[str, list[float]]:
    """{name: img/s in each round}: ``rounds`` rounds in which every contender makes its ``calls`` (about
    ``ROUND_SECONDS`` of them), the order rotating from round to round, the others waiting idle meanwhile."""
    per_round: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in [*names[r % len(names) :], *names[: r % len(names)]]:
            _, seconds = contenders.ask(name, "run", calls[name])
            per_round[name].append(calls[name] * batch / seconds)
            tick()
    return per_round


def results(
    names: Sequence[str], unavailable: Mapping[str, str], per_round: Mapping[str, list[float]]
) -> dict[str, dict[str, Any]]:
    """Per contender: img/s (the median over rounds), each round's img/s and the ratio to the reference's
    median (None without a reference), or why it is unavailable."""
    medians = {name: statistics.median(values) for name, values in per_round.items()}
    base = medians.get(REFERENCE)
    found = {}
    for name in names:
        if name in unavailable:
            found[name] = {"unavailable": unavailable[name]}
        else:
            ratio = None if base is None else medians[name] / base
            found[name] = {"img_s": medians[name], "ratio": ratio, "rounds_img_s": per_round[name]}
    return found


def forward_section(
    frameworks: Sequence[str],
    missing: Mapping[str, str],
    rounds: int,
    models: Mapping[str, tuple[int, int]] = FORWARD_MODELS,
    batches: Sequence[int] = BATCHES,
    round_seconds: float = ROUND_SECONDS,
) -> list[dict[str, Any]]:
    """One entry per model and batch: its input shape, what the reference is and each contender's ``results``.

    Each contender runs in a process of its own, as a user's program runs one framework: OpenMP (torch's
    and mxnet's) waits actively for a while after each parallel region, and in one process the idle
    framework's spinning threads took the cores from the one running (torchvision's batch-8 forward fell
    to a fifteenth beside mxnet), while passive waiting, which prevents it, cost torch's forward 3x at batch
    1. Between its turns a process waits on its pipe and uses no core.
    """
    running = [name for name in (REFERENCE, *frameworks) if name not in missing]
    cases = []
    steps = len(models) * len(batches) * (1 + len(frameworks)) * (1 + rounds)
    with progress(steps, "forward: starting a process per contender") as bar, Contenders(running) as contenders:
        for model, (height, width) in models.items():
            spec = get_spec(model)
            for batch in batches:
                bar.set_description(f"forward: {model} batch {batch}")
                shape = (batch, spec.in_channels, height, width)
                unavailable = {name: missing[name] for name in frameworks if name in missing}
                calls, described = {}, "unavailable"
                for name in running:
                    reply = contenders.ask(name, "prepare", model, shape)
                    if reply[0] == "unavailable":
                        unavailable[name] = reply[1]
                    else:
                        _, what, seconds = reply
                        described = what if name == REFERENCE else described
                        calls[name] = max(1, round(round_seconds / seconds))
                bar.update(len(running) + len(unavailable) * rounds + sum(name in missing for name in frameworks))
                per_round = throughput(contenders, list(calls), rounds, batch, calls, bar.update)
                case = {"model": model, "input": list(shape), "reference": described, "rounds": rounds}
                cases.append({**case, "results": results([REFERENCE, *frameworks], unavailable, per_round)})
    return cases


def throughput_cell(result: Mapping[str, Any]) -> str:
    """img/s and the ratio, then the slowest and the fastest round."""
    if "unavailable" in result:
        return "unavailable"
    ratio = "" if result["ratio"] is None else f"  {result['ratio']:.2f}x"
    return f"{result['img_s']:.1f}{ratio}\n{min(result['rounds_img_s']):.1f}-{max(result['rounds_img_s']):.1f}"


def forward_table(cases: Sequence[Mapping[str, Any]]):
    from rich.table import Table

    names = list(cases[0]["results"]) if cases else []
    table = Table(
        title="forward throughput: img/s (median over rounds) and ratio to the reference, same run; "
        "below: the slowest and the fastest round",
        caption="reference: model(x) under torch.inference_mode()",
    )
    for column in ("model", "input", "reference", *names):
        table.add_column(column, justify="right" if column in names else "left")
    for case in cases:
        cells = map(throughput_cell, case["results"].values())
        table.add_row(case["model"], "x".join(map(str, case["input"])), case["reference"], *cells)
    return table


# ---------------------------------------------------------------- children: build and first call, measured commands


def first_call(framework: str, model: str, height: int, width: int) -> dict[str, float]:
    """Seconds to import ``framework``'s backend, build ``model`` and run its first and second forward (batch 1)."""
    start = time.perf_counter()
    backend = get_backend(framework)
    imported = time.perf_counter()
    spec = get_spec(model)
    net = backend.build(spec)
    built = time.perf_counter()
    x = np.random.default_rng(0).standard_normal((1, spec.in_channels, height, width), "float32")
    backend.forward(net, x)
    first = time.perf_counter()
    backend.forward(net, x)
    second = time.perf_counter()
    return {
        "import_s": imported - start,
        "build_s": built - imported,
        "first_call_s": first - built,
        "second_call_s": second - first,
    }


def measure(command: Sequence[str]) -> dict[str, Any]:
    """Wall seconds, peak resident memory (KiB) and exit code of ``command``, run as this process's child
    with its stdout sent to stderr (stdout is for this process's result).

    On Linux a child's peak RSS includes the peak of the memory it ran in before its exec, and a child
    spawned straight from the benchmark process runs in that big process's memory until then: so
    ``measured`` runs this function in a small process of its own, whose peak (~40 MiB) is the floor.
    """
    start = time.perf_counter()
    pid = os.posix_spawn(command[0], list(command), os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, 2, 1)])
    _, status, usage = os.wait4(pid, 0)
    return {
        "wall_s": time.perf_counter() - start,
        "peak_kib": usage.ru_maxrss,
        "exit_code": os.waitstatus_to_exitcode(status),
    }


def child(arguments: Sequence[str]) -> dict[str, Any]:
    """What ``python -m parity.bench`` runs: ``first-call FRAMEWORK MODEL HEIGHT WIDTH`` or ``measure COMMAND...``."""
    kind, *rest = arguments
    if kind == "first-call":
        framework, model, height, width = rest
        return first_call(framework, model, int(height), int(width))
    return measure(rest)


def in_child(arguments: Sequence[str], cache: Path) -> dict[str, Any]:
    """``child(arguments)`` in a fresh ``python -m parity.bench`` whose project cache folder is ``cache``:
    its result, with the whole process's seconds, or {"error": its last line}."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "parity.bench", *arguments], capture_output=True, text=True, env=cache_env(cache)
    )
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]}
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "process_s": time.perf_counter() - start}


def measured(command: Sequence[str], cache: Path) -> dict[str, Any]:
    """``measure(command)``, run by a small process of its own, with ``cache`` as the project cache folder;
    the command's output lines are ``output``."""
    done = subprocess.run(
        [sys.executable, "-m", "parity.bench", "measure", *command],
        capture_output=True,
        text=True,
        check=True,
        env=cache_env(cache),
    )
    return {**json.loads(done.stdout), "output": done.stderr.strip().splitlines()}


def cache_env(cache: Path) -> dict[str, str]:
    """This process's environment, with ``cache`` as the project cache folder (``parity.backends.cache_dir``)."""
    return {**os.environ, "PARITY_CACHE_DIR": str(cache)}


# ---------------------------------------------------------------- build and first call


def build_section(
    frameworks: Sequence[str], missing: Mapping[str, str], models: Mapping[str, tuple[int, int]] = FORWARD_MODELS
) -> list[dict[str, Any]]:
    """Per model and framework, ``first_call``'s seconds in a fresh process with an empty project cache
    folder, as on a first run, and under ``cached`` those of a second process on the cache the first left."""
    rows = []
    with progress(len(models) * len(frameworks), "build") as bar:
        for model, (height, width) in models.items():
            shape = [1, get_spec(model).in_channels, height, width]
            for fw in frameworks:
                bar.set_description(f"build: {fw} {model}")
                row: dict[str, Any] = {"model": model, "framework": fw, "input": shape}
                if fw in missing:
                    row["unavailable"] = missing[fw]
                else:
                    arguments = ["first-call", fw, model, str(height), str(width)]
                    with tempfile.TemporaryDirectory(prefix="parity-bench-cache-") as cache:
                        row.update(in_child(arguments, Path(cache)))
                        row["cached"] = in_child(arguments, Path(cache))
                rows.append(row)
                bar.update()
    return rows


BUILD_COLUMNS = ("import_s", "build_s", "first_call_s", "second_call_s", "process_s")


def build_table(rows: Sequence[Mapping[str, Any]]):
    from rich.table import Table

    table = Table(
        title="build and first call, batch 1, each in a fresh process: seconds",
        caption="first run: an empty project cache folder; cached: a second process on the folder the first one filled",
    )
    columns = ("import", "build", "first call", "second call", "whole process")
    for column in ("model", "framework", "run", *columns):
        table.add_column(column, justify="right" if column in columns else "left")
    for row in rows:
        for run, times in (("first run", row), ("cached", row.get("cached", {}))):
            problem = row.get("unavailable") or times.get("error")
            cells = [problem, *[""] * (len(columns) - 1)] if problem else [f"{times[c]:.2f}" for c in BUILD_COLUMNS]
            table.add_row(row["model"], row["framework"], run, *cells)
            if "unavailable" in row:
                break
    return table


# ---------------------------------------------------------------- conversion


def save_checkpoint(path: Path) -> None:
    """torchvision's ``CONVERT_MODEL`` with random weights (seed 0), saved with ``torch.save`` as people do."""
    import torch

    from parity import torchvision_io

    model = torchvision_io.BACKEND.build(torchvision_io.spec_for(CONVERT_MODEL), seed=0)
    torch.save(model.state_dict(), path)


def imports_of_convert(framework: str) -> list[str]:
    """A command that imports what ``parity convert --from torchvision:... --to framework`` does, and stops."""
    modules = ["parity.cli", "parity.convert", "parity.harness", "parity.native", "parity.torchvision_io"]
    modules.append("torchvision")
    return [sys.executable, "-c", f"import {', '.join([*modules, f'impl_{framework}.backend'])}"]


def convert_target(framework: str, checkpoint: Path, size: int) -> dict[str, Any]:
    """``parity convert`` into ``framework`` and its import baseline, each with an empty project cache folder."""
    out = checkpoint.with_name(f"{framework}{native.FORMATS[framework].suffixes[0]}")  # the framework's own format
    command = [sys.executable, "-m", "parity.cli", "convert", "--from", f"torchvision:{CONVERT_MODEL}"]
    command += ["--weights", str(checkpoint), "--to", framework, "--out", str(out)]
    with tempfile.TemporaryDirectory(prefix="parity-bench-cache-") as cache:
        baseline = measured(imports_of_convert(framework), Path(cache))
    with tempfile.TemporaryDirectory(prefix="parity-bench-cache-") as cache:
        run = measured(command, Path(cache))
    out.unlink(missing_ok=True)
    above = (run["peak_kib"] - baseline["peak_kib"]) * 1024 / size
    converted = run["exit_code"] == 0  # a conversion that fails meets no target
    return {
        "wall_s": run["wall_s"],
        "peak_kib": run["peak_kib"],
        "baseline_peak_kib": baseline["peak_kib"],
        "above_baseline_per_checkpoint": above,
        "exit_code": run["exit_code"],
        "error": None if converted else (run["output"] or [""])[-1],
        "wall_within_target": converted and run["wall_s"] < TARGET_SECONDS,
        "memory_within_target": converted and above < TARGET_MEMORY,
    }


def convert_section(frameworks: Sequence[str], missing: Mapping[str, str]) -> dict[str, Any]:
    """``parity convert`` of a RegNetX-32GF checkpoint into each framework, and the targets it should meet."""
    targets: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="parity-bench-") as folder, progress(1 + len(frameworks), "convert") as bar:
        bar.set_description(f"convert: saving {CONVERT_MODEL}")
        checkpoint = Path(folder, f"{CONVERT_MODEL}.pth")
        save_checkpoint(checkpoint)
        size = checkpoint.stat().st_size
        bar.update()
        for fw in frameworks:
            bar.set_description(f"convert: into {fw}")
            targets[fw] = {"unavailable": missing[fw]} if fw in missing else convert_target(fw, checkpoint, size)
            bar.update()
    return {
        "model": CONVERT_MODEL,
        "checkpoint_bytes": size,
        "target_wall_s": TARGET_SECONDS,
        "target_above_baseline_per_checkpoint": TARGET_MEMORY,
        "targets": targets,
    }


def convert_table(section: Mapping[str, Any]):
    from rich.table import Table

    mib = section["checkpoint_bytes"] / 2**20
    table = Table(
        title=f"parity convert --from torchvision:{section['model']} ({mib:.0f} MiB torch.save checkpoint) --to ...: "
        f"targets < {section['target_wall_s']:.0f} s, peak above the import baseline "
        f"< {section['target_above_baseline_per_checkpoint']:.0f}x the checkpoint"
    )
    for column in ("into", "wall", "peak", "import baseline", "above baseline / checkpoint", "exit code"):
        table.add_column(column, justify="left" if column in ("into", "exit code") else "right")
    verdict = {True: "[green]pass[/]", False: "[red]fail[/]"}
    for fw, t in section["targets"].items():
        if "unavailable" in t:
            table.add_row(fw, t["unavailable"], "", "", "", "")
            continue
        table.add_row(
            fw,
            f"{t['wall_s']:.1f} s {verdict[t['wall_within_target']]}",
            f"{t['peak_kib'] / 2**10:.0f} MiB",
            f"{t['baseline_peak_kib'] / 2**10:.0f} MiB",
            f"{t['above_baseline_per_checkpoint']:.2f}x {verdict[t['memory_within_target']]}",
            str(t["exit_code"]) + (f": {t['error']}" if t["error"] else ""),
        )
    return table


# ---------------------------------------------------------------- the whole run


def run(
    frameworks: Sequence[str],
    sections: Sequence[str] = SECTIONS,
    rounds: int = ROUNDS,
    show: Show = lambda renderable: None,
    models: Mapping[str, tuple[int, int]] = FORWARD_MODELS,
    batches: Sequence[int] = BATCHES,
    round_seconds: float = ROUND_SECONDS,
) -> dict[str, Any]:
    """The header, then each of ``sections`` in turn, each shown (``show``) as soon as it is measured;
    everything as one JSON-ready dict."""
    missing = import_backends(frameworks)
    result: dict[str, Any] = {"header": header(frameworks, missing)}
    show(header_lines(result["header"]))
    if "forward" in sections:
        result["forward"] = forward_section(frameworks, missing, rounds, models, batches, round_seconds)
        show(forward_table(result["forward"]))
    if "build" in sections:
        result["build"] = build_section(frameworks, missing, models)
        show(build_table(result["build"]))
    if "convert" in sections:
        result["convert"] = convert_section(frameworks, missing)
        show(convert_table(result["convert"]))
    return result


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1:])))
