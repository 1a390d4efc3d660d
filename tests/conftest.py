"""Shared fixtures: tiny fake CIFAR-10 folders written with plain pickle, independent of the package."""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_fake_cifar(
    root: Path, per_batch: int = 20, n_test: int = 30, *, bytes_keys: bool = False, seed: int = 0
) -> Path:
    """ROOT/cifar-10-batches-py with 5 train batches of `per_batch` and a test batch of `n_test`.

    Images are learnable: each class has its own mean colour plus noise.
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    key = (lambda k: k.encode()) if bytes_keys else (lambda k: k)
    colours = rng.integers(30, 226, size=(10, 3))

    def batch(n: int, label: str) -> dict:
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        noise = rng.integers(-30, 31, size=(n, 3, 1024))
        data = np.clip(colours[labels][:, :, None] + noise, 0, 255).astype(np.uint8).reshape(n, 3072)
        return {key("batch_label"): label, key("labels"): labels.tolist(), key("data"): data}

    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch(per_batch, f"training batch {i} of 5"), f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch(n_test, "testing batch 1 of 1"), f)
    names = [c.encode() for c in CLASSES] if bytes_keys else CLASSES
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({key("label_names"): names, key("num_vis"): 3072}, f)
    return root


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (or mutmut) the workers share the cores: each gets its share of torch
    threads, since more threads than cores slows every worker down."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers or "MUTANT_UNDER_TEST" in os.environ:  # mutmut too runs one pytest per core
        import torch

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        torch.set_num_threads(max(1, cores // int(workers or cores)))


MODULE_SECONDS = Path(__file__).with_name("module_seconds.json")  # from a run with --save-module-seconds


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--save-module-seconds",
        action="store_true",
        help=f"write each test module's time in this run to {MODULE_SECONDS.name} (what make test orders by)",
    )


# Under mutation testing (mutmut runs the tests in its mutants/ folder), two files there order them:
KILLERS = "mutation-killers.tsv"  # one line per caught mutant: "mutant<TAB>the test that failed"
TEST_SECONDS = "mutation-test-seconds.json"  # each test's whole time (set-up too) in mutmut's clean run
_test_seconds: dict[str, float] = {}  # this run's, per test: set-up, call and teardown


def _mutant_neighbours(mutant: str) -> tuple[str, str]:
    """'pkg.module.xǁClassǁmethod__mutmut_7' -> ('pkg.module.xǁClassǁmethod', 'pkg.module')."""
    function = mutant.rsplit("__mutmut_", 1)[0]
    return function, function.rsplit(".", 1)[0]


def _mutation_order(root: Path, mutant: str) -> Callable[[pytest.Item], tuple[int, float]]:
    """Under mutation testing, the tests most likely to fail first: those that caught another mutant
    of the same function, then of the same module, then the rest, each group quickest first. A
    mutant's run stops at its first failing test, and mutants of one function mostly fall to the
    same test, so most mutants die in the first test run instead of after dozens."""
    seconds, killers = root / TEST_SECONDS, root / KILLERS
    durations = json.loads(seconds.read_text()) if seconds.exists() else {}
    function, module = _mutant_neighbours(mutant)
    rank: dict[str, int] = {}
    for line in killers.read_text().splitlines() if killers.exists() else []:
        caught, _, test = line.partition("\t")
        caught_function, caught_module = _mutant_neighbours(caught)
        group = 0 if caught_function == function else 1 if caught_module == module else 2
        rank[test] = min(rank.get(test, 2), group)
    return lambda item: (rank.get(item.nodeid, 2), durations.get(item.nodeid, 0.0))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under mutation testing (benchmarks/mutation.sh), the tests likeliest to catch the mutant first
    (_mutation_order). Otherwise the slowest modules first: `make test`'s workers take whole modules
    in this order, and a long module taken last would leave the other worker idle until it ends."""
    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    if "__mutmut_" in mutant:  # the oracle is the fast tests of the core: beyond_core ones are left out
        beyond = [item for item in items if item.get_closest_marker("beyond_core")]
        if beyond:
            config.hook.pytest_deselected(items=beyond)
            items[:] = [item for item in items if not item.get_closest_marker("beyond_core")]
        items.sort(key=_mutation_order(config.rootpath, mutant))
        return
    seconds = json.loads(MODULE_SECONDS.read_text()) if MODULE_SECONDS.exists() else {}
    items.sort(key=lambda item: -seconds.get(item.path.name, 0.0))  # stable: a module's tests keep their order


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _test_seconds[report.nodeid] = _test_seconds.get(report.nodeid, 0.0) + report.duration
    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    if report.failed and "__mutmut_" in mutant:  # appends of one short line do not interleave
        with open(KILLERS, "a", encoding="utf-8") as f:  # mutmut runs the tests in mutants/
            f.write(f"{mutant}\t{report.nodeid}\n")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """mutmut's clean run of every test (MUTANT_UNDER_TEST set and empty) leaves each test's time for
    _mutation_order: mutmut's own durations leave out the set-up, where some tests train a model.
    With --save-module-seconds, after a run that passed and ran whole modules (no -k or -m), the
    controller (not an xdist worker) updates the modules this run timed; the others keep their times."""
    config = session.config
    if os.environ.get("MUTANT_UNDER_TEST", None) == "" and exitstatus == 0 and _test_seconds:
        (config.rootpath / TEST_SECONDS).write_text(json.dumps(_test_seconds))
    whole = not (config.option.keyword or config.option.markexpr) and exitstatus == 0
    if config.getoption("--save-module-seconds") and not hasattr(config, "workerinput") and whole:
        times = json.loads(MODULE_SECONDS.read_text()) if MODULE_SECONDS.exists() else {}
        modules: dict[str, float] = {}
        for nodeid, t in _test_seconds.items():
            name = Path(nodeid.split("::")[0]).name
            modules[name] = modules.get(name, 0.0) + t
        times.update({name: round(t, 1) for name, t in modules.items()})
        ordered = dict(sorted(times.items(), key=lambda kv: -kv[1]))
        MODULE_SECONDS.write_text(json.dumps(ordered, indent=1) + "\n")


@pytest.fixture(autouse=True)
def torch_settings_restored():
    """In-process runs set torch's threads (--threads 1) and deterministic mode process-wide: put them
    back, so no later test runs on fewer cores than the machine has."""
    import torch

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield
    torch.set_num_threads(threads)
    if torch.are_deterministic_algorithms_enabled() != deterministic:  # the call imports torch._inductor
        torch.use_deterministic_algorithms(deterministic)


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    return write_fake_cifar(tmp_path / "data")


@pytest.fixture
def real_root() -> Path:
    root = os.environ.get("CIFAR10_ROOT")
    if not root:
        pytest.skip("CIFAR10_ROOT is not set: real CIFAR-10 checks skipped")
    return Path(root)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """The real CLI in this process (no torch import per call): (exit status, stdout, stderr)."""
    from alexnet_cifar.cli import main

    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse's usage errors and --help
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *words: str, status: int | None = None) -> str:
    """A non-zero exit with exactly one line on stderr, no traceback, holding every word."""
    lines = err.strip().splitlines()
    assert code != 0 and (status is None or code == status), (code, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


TINY = ("--epochs", "1", "--batch-size", "16", "--lr", "0.02", "--device", "cpu", "--threads", "1", "--quiet")


def tiny_fit(tmp_path: Path, name: str = "run", data_root: Path | None = None, **overrides):
    """The one short training run the tests share: 2 epochs of batch 16 on fake data (a second or
    so). Returns (history, RunDir)."""
    from alexnet_cifar.artifacts.run_dir import RunDir
    from alexnet_cifar.config import resolve_config
    from alexnet_cifar.data.cifar10 import load_cifar10
    from alexnet_cifar.training.loop import fit

    if data_root is None:
        data_root = tmp_path / "data"
        if not data_root.exists():
            write_fake_cifar(data_root, per_batch=40, n_test=40)
    cfg = resolve_config("seed", {"epochs": 2, "batch_size": 16, "lr": 0.02, "device": "cpu", **overrides})
    run = RunDir.create(tmp_path / name)
    return fit(cfg, load_cifar10(data_root), run, show_progress=False), run


def max_difference(a: Path, b: Path) -> float:
    """The largest difference between the final weights (model.pt) of two run folders."""
    import torch

    wa, wb = torch.load(a / "model.pt", weights_only=True), torch.load(b / "model.pt", weights_only=True)
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)


def lesson_numbers(out: str) -> list[float]:
    """Loss and accuracy values of the lesson's per-epoch lines (and of the test line, if any)."""
    lines = [line for line in out.splitlines() if line.startswith(("Epoch", "Test Loss"))]
    lines = [line.rsplit(", Time", 1)[0].split(" (")[0] for line in lines]
    return [float(part.split(": ")[1]) for line in lines for part in line.split(", ")]


def stop_after(batches: int):
    """Signal handlers (for `fit(stop=...)`) whose SIGTERM arrives at the loop's `batches`-th question
    (it asks once at start-up, then after every batch but an epoch's last), with no real signal."""
    import signal

    from alexnet_cifar.training.signals import StopOnSignal

    class StopAfter(StopOnSignal):
        def __init__(self) -> None:
            super().__init__()
            self.left = batches

        @property
        def requested(self) -> bool:
            self.left -= 1
            if self.left <= 0:
                self.signum = signal.SIGTERM
            return self.left <= 0

    return StopAfter()


def poison_after(monkeypatch, steps: int) -> list[int]:
    """Make the weights NaN right after optimizer step number `steps`; returns the list that counts
    the steps taken (one entry each)."""
    import torch

    from alexnet_cifar.training.trainer import Trainer

    step, taken = Trainer.step, []

    def step_then_poison(self, loss):
        step(self, loss)
        taken.append(1)
        if len(taken) == steps:
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))

    monkeypatch.setattr(Trainer, "step", step_then_poison)
    return taken
