"""Interleaved timing against same-run floors, and peak-memory measurement.

This VM's throughput drifts 2-5x within minutes, so an absolute time means
little. Every benchmark therefore measures its floors *in the same rounds*:
before each timed call of the op, pytest-benchmark's ``setup`` hook (untimed)
resets the inputs if needed and times one call of every floor. The reported
ratio is the median over rounds of ``op_time[r] / floor_time[r]``, which
cancels drift slower than one round.

Floors:

* ``oop`` - a compiled out-of-place elementwise op over the same tensors
  (``p * 0.5``: reads each input once, writes one new tensor, allocating it
  exactly as a pure op allocates its result);
* ``inplace`` - eager in-place ``mul_`` (``torch._foreach_mul_`` for many
  tensors): reads and writes each input once, allocates nothing.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor

__all__ = ["Floors", "Result", "run_interleaved", "peak_extra_bytes", "nbytes"]


def nbytes(obj: Any) -> int:
    """Pure: total bytes of the tensors in a (nested) tensor / list / dict."""
    if isinstance(obj, Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(nbytes(v) for v in obj)
    return 0


class Floors:
    """The two floors over one list of tensors (built once per workload)."""

    def __init__(self, tensors: Sequence[Tensor], backend: str = "inductor"):
        self.tensors = list(tensors)
        self._oop = torch.compile(_oop_floor, fullgraph=True, backend=backend)

    def oop(self) -> None:
        """Pure floor: one compiled out-of-place elementwise op per tensor (result dropped)."""
        self._oop(self.tensors)

    def inplace(self) -> None:
        """Mutates: multiplies every tensor by 1.0 in place (values unchanged)."""
        with torch.no_grad():
            if len(self.tensors) == 1:
                self.tensors[0].mul_(1.0)
            else:
                torch._foreach_mul_(self.tensors, 1.0)


def _oop_floor(ts: List[Tensor]) -> List[Tensor]:
    return [t * 0.5 for t in ts]


@dataclass
class Result:
    """One benchmark row: op times and both floors' times, per round (seconds)."""

    workload: str
    impl: str
    what: str
    floor: str  # which floor the target applies to: "oop" or "inplace"
    target: Optional[float]
    op: List[float]
    floors: Dict[str, List[float]]
    peak_bytes: Optional[int] = None
    io_bytes: Optional[int] = None
    bool_buffers: Optional[List[str]] = None
    note: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)

    def median(self) -> float:
        return statistics.median(self.op)

    def floor_median(self, name: str) -> float:
        return statistics.median(self.floors[name])

    def ratio(self, name: str) -> float:
        """Median over rounds of op / floor (same round)."""
        return statistics.median(o / f for o, f in zip(self.op, self.floors[name]))

    def met(self) -> Optional[bool]:
        return None if self.target is None else self.ratio(self.floor) <= self.target

    def memory_ok(self) -> Optional[bool]:
        if self.peak_bytes is None or not self.io_bytes:
            return None
        return self.peak_bytes <= 1.25 * self.io_bytes

    def as_json(self) -> Dict[str, Any]:
        return {
            "workload": self.workload,
            "impl": self.impl,
            "what": self.what,
            "floor": self.floor,
            "target": self.target,
            "median_s": self.median(),
            "floor_median_s": {k: self.floor_median(k) for k in self.floors},
            "ratio": {k: self.ratio(k) for k in self.floors},
            "target_met": self.met(),
            "peak_extra_bytes": self.peak_bytes,
            "inputs_plus_outputs_bytes": self.io_bytes,
            "memory_ok": self.memory_ok(),
            "element_bool_buffers": self.bool_buffers,
            "rounds": len(self.op),
            "op_s": self.op,
            "floors_s": self.floors,
            "note": self.note,
            **self.extra,
        }


def run_interleaved(
    benchmark: Any,
    op: Callable[[], Any],
    floors: Floors,
    *,
    rounds: int,
    warmup: int = 1,
    reset: Optional[Callable[[], None]] = None,
) -> tuple:
    """Mutates floors' tensors in place only by ``* 1.0``; times ``op`` against both floors.

    Uses ``benchmark.pedantic`` (so pytest-benchmark records the op's stats
    and JSON); its untimed ``setup`` hook runs ``reset`` and then times one
    call of each floor, alternating their order, so every round holds one
    measurement of each.

    Returns:
        ``(op_times, {"oop": [...], "inplace": [...]})`` for the timed rounds.
    """
    got: Dict[str, List[float]] = {"oop": [], "inplace": []}
    calls = {"n": 0}

    def setup() -> None:
        if reset is not None:
            reset()
        order = ("oop", "inplace") if calls["n"] % 2 == 0 else ("inplace", "oop")
        calls["n"] += 1
        for name in order:
            f = getattr(floors, name)
            t0 = time.perf_counter()
            f()
            got[name].append(time.perf_counter() - t0)

    def target() -> None:
        op()  # the result is dropped inside the timed region, like the floors'

    benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=warmup, iterations=1)
    if benchmark.disabled:  # --benchmark-disable: a single untimed call
        return [float("nan")], {k: [float("nan")] for k in got}
    op_times = list(benchmark.stats.stats.data)
    return op_times, {k: v[-len(op_times):] for k, v in got.items()}


def peak_extra_bytes(fn: Callable[[], Any]) -> int:
    """Mutates nothing: peak bytes allocated by one call of ``fn`` (result included).

    Uses the profiler's allocation records in time order. ``total_allocated``
    is the allocator's running total, which need not start at 0 (garbage of
    earlier cases freed meanwhile, allocator state), so the baseline is taken
    from the first record (its total minus its own size) and the peak is
    measured from there. Garbage is collected first so that no cycle of an
    earlier case is freed, or counted, inside the call.
    """
    import gc

    from torch.profiler import ProfilerActivity, profile

    gc.collect()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
        del out
    records = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        ef = node.extra_fields
        if type(ef).__name__.endswith("Allocation"):
            records.append((node.start_time_ns, int(ef.total_allocated), int(ef.alloc_size)))
    if not records:
        return 0
    records.sort()
    base = records[0][1] - records[0][2]
    return max(0, max(total for _, total, _ in records) - base)
