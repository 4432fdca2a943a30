"""One pytest-benchmark test per table row (see workloads.py); no timed assertions.

Each test builds its case (compiling outside the timed region), then times
the op against both floors interleaved round by round and measures the peak
extra memory of one call. A failure here means the op raised, never that it
was slow.
"""

from __future__ import annotations

import math
import time

import pytest
import torch

from .harness import Floors, Result, peak_extra_bytes, run_interleaved
from .workloads import BACKEND, Case, available, cases, element_bool_buffers

CASES = cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_workload(case: Case, benchmark, sizes, bench_config, results) -> None:  # noqa: ANN001
    for req in case.requires:
        if not available(req):
            pytest.skip(f"{req} not available")
    torch._dynamo.reset()
    prep = case.make(sizes)
    floors = Floors(prep.floor_tensors, BACKEND["name"])
    floors.oop()  # compile the floor before timing
    rounds = bench_config["rounds"]
    if case.slow and not bench_config["smoke"]:
        if prep.reset:
            prep.reset()
        t0 = time.perf_counter()
        prep.op()  # warm-up call, also sizes the number of rounds
        first = time.perf_counter() - t0
        rounds = max(3, min(rounds, math.ceil(bench_config["peer_seconds"] / max(first, 1e-9))))
    benchmark.group = case.label(sizes)
    op_t, fl_t = run_interleaved(benchmark, prep.op, floors, rounds=rounds, warmup=bench_config["warmup"],
                                 reset=prep.reset)
    if prep.reset:
        prep.reset()
    peak = peak_extra_bytes(prep.op)
    numel = min(t.numel() for t in prep.floor_tensors)
    res = Result(
        workload=case.label(sizes), impl=case.impl, what=case.what, floor=case.floor, target=case.target,
        op=op_t, floors=fl_t, peak_bytes=peak, io_bytes=prep.io_bytes,
        bool_buffers=element_bool_buffers(prep.code, numel) if prep.code else None, note=case.note,
    )
    benchmark.extra_info.update(res.as_json())
    results.append(res)
