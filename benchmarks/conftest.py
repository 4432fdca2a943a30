"""pytest options for the benchmark suite, and the table printed at the end of a run.

Run from the repository root:

    python -m pytest benchmarks                # full sizes, prints the table
    python -m pytest benchmarks --smoke        # tiny shapes, one round, Dynamo-only backend (CI)
    python -m pytest benchmarks -k W1          # a subset
    python -m pytest benchmarks -k "W4 or W5" --n 2048   # other sizes

pytest-benchmark records the op's own timings (``--benchmark-json=PATH`` dumps
them, with floors, ratios and memory in each entry's ``extra_info``);
``--table-json=PATH`` writes just the table rows.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from typing import List

import pytest
import torch

from .harness import Result
from .workloads import BACKEND, Sizes

_RESULTS = pytest.StashKey[List[Result]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("sparsekit_fx benchmarks")
    g.addoption("--smoke", action="store_true", help="tiny shapes, one round: checks the suite runs (CI)")
    g.addoption("--rounds", type=int, default=15, help="timed rounds per sparsekit_fx row (default 15)")
    g.addoption("--peer-seconds", type=float, default=20.0,
                help="time budget per peer row; peers get between 3 and --rounds rounds (default 20)")
    g.addoption("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    g.addoption("--backend", default=None,
                help="torch.compile backend for sparsekit_fx rows (default inductor; eager (Dynamo tracing only) with --smoke)")
    g.addoption("--table-json", default=None, help="write the table rows as JSON to this path")
    g.addoption("--n", type=int, default=None, help="matrix side of W2-W5 and the large W1 (default 4096)")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_RESULTS] = []
    # The table below replaces pytest-benchmark's own report (which shows op times only).
    config.option.benchmark_quiet = True
    torch.set_num_threads(config.getoption("--threads"))
    smoke = config.getoption("--smoke")
    BACKEND["name"] = config.getoption("--backend") or ("eager" if smoke else "inductor")
    # Every case compiles its own step: allow many cached graphs per code object.
    torch._dynamo.config.cache_size_limit = 64


@pytest.fixture(scope="session")
def sizes(pytestconfig: pytest.Config) -> Sizes:
    if pytestconfig.getoption("--smoke"):
        return Sizes.smoke()
    n = pytestconfig.getoption("--n")
    return Sizes() if n is None else Sizes(n=n)


@pytest.fixture(scope="session")
def bench_config(pytestconfig: pytest.Config) -> dict:
    smoke = pytestconfig.getoption("--smoke")
    return {
        "smoke": smoke,
        "rounds": 1 if smoke else pytestconfig.getoption("--rounds"),
        "warmup": 0 if smoke else 1,
        "peer_seconds": pytestconfig.getoption("--peer-seconds"),
    }


@pytest.fixture(scope="session")
def results(pytestconfig: pytest.Config) -> List[Result]:
    return pytestconfig.stash[_RESULTS]


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _fmt_ratio(r: Result, name: str) -> str:
    v = r.ratio(name)
    return "-" if v != v else f"{v:.2f}"


def _table(results: List[Result], config: pytest.Config) -> List[str]:
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    smoke = " SMOKE (tiny shapes, 1 round: timings meaningless)" if config.getoption("--smoke") else ""
    smoke += f" | compile backend: {BACKEND['name']}"
    lines = [
        f"sparsekit_fx benchmarks{smoke}",
        f"{now} | {_cpu_name()} | {os.cpu_count()} CPUs | torch {torch.__version__} | "
        f"{torch.get_num_threads()} threads | fp32",
        "ms: median op time.  x oop / x inpl: median over rounds of op time / floor time in the same round.",
        "  oop floor  = compiled out-of-place `p * 0.5` over the op's tensors (pure ops' target floor)",
        "  inpl floor = eager in-place `mul_` / `torch._foreach_mul_` (write-through / in-place target floor)",
        "peak/io: peak extra memory of one call / (inputs + outputs); must be <= 1.25.",
        "",
    ]
    head = f"{'workload':<26}{'impl':<22}{'what':<34}{'ms':>9}{'x oop':>8}{'x inpl':>8}  {'target':<14}{'peak/io':>8}"
    lines += [head, "-" * len(head)]
    last = None
    for r in results:
        wl = r.workload if r.workload != last else ""
        last = r.workload
        ms = r.median() * 1e3
        tgt = "" if r.target is None else f"<={r.target:g} {'oop' if r.floor == 'oop' else 'inpl'} " + (
            "ok" if r.met() else "MISS")
        mem = "-" if r.peak_bytes is None or not r.io_bytes else f"{r.peak_bytes / r.io_bytes:.2f}" + (
            "" if r.memory_ok() else "!")
        lines.append(f"{wl:<26}{r.impl:<22}{r.what[:33]:<34}{ms:>9.2f}{_fmt_ratio(r, 'oop'):>8}"
                     f"{_fmt_ratio(r, 'inplace'):>8}  {tgt:<14}{mem:>8}")
        if r.bool_buffers:
            lines.append(f"{'':<26}  ! element-level bool/uint8 buffers on the hot path: {', '.join(r.bool_buffers)}")
        if r.note:
            lines.append(f"{'':<26}  note: {r.note}")
    return lines


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:  # noqa: ANN001
    results = config.stash.get(_RESULTS, [])
    if not results:
        return
    terminalreporter.write_sep("=", "sparsekit_fx benchmark table")
    for line in _table(results, config):
        terminalreporter.write_line(line)
    path = config.getoption("--table-json")
    if path:
        with open(path, "w") as f:
            json.dump([r.as_json() for r in results], f, indent=1)
        terminalreporter.write_line(f"table rows written to {path}")
