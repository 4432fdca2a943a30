"""Schedules: exact values at known steps, parity with CubicSL, no recompiles."""

import pytest
import torch
from torch._dynamo.testing import CompileCounter

import sparsekit_fx as skf
from sparsekit_fx import BlockSpec, ScopeSpec, View


def at(schedule, step):
    return schedule(torch.tensor(step))


def f32(x):
    return torch.tensor(x, dtype=torch.float32)


def test_constant_and_one_shot_exact():
    c = skf.constant_schedule(0.75)
    assert all(torch.equal(at(c, s), f32(0.75)) for s in (0, 1, 10**6))
    o = skf.one_shot_schedule(0.5, at=10)
    assert [at(o, s).item() for s in (0, 9, 10, 11, 1000)] == [0.0, 0.0, 0.5, 0.5, 0.5]
    assert at(o, 3).dtype == torch.float32 and at(o, 3).ndim == 0


def test_cubic_exact_at_known_steps():
    s = skf.cubic_schedule(0.8, begin=100, end=200)
    # s_t = 0.8 * (1 - (1 - p)^3) with p = (t - 100) / 100
    expected = {0: 0.0, 99: 0.0, 100: 0.0, 150: 0.7, 175: 0.8 * (1 - 0.25 ** 3), 200: 0.8, 10**5: 0.8}
    for step, value in expected.items():
        assert torch.equal(at(s, step), f32(value)), step


def test_polynomial_with_initial_power_and_frequency():
    s = skf.polynomial_schedule(0.9, begin=0, end=100, initial=0.5, power=2, every=25)
    # value moves only at 0, 25, 50, 75, 100: 0.9 + (0.5 - 0.9) * (1 - q/100)^2
    for step, q in [(0, 0), (24, 0), (25, 25), (49, 25), (60, 50), (99, 75), (100, 100)]:
        assert torch.equal(at(s, step), f32(0.9 - 0.4 * (1 - q / 100) ** 2)), step


def test_end_not_a_multiple_of_every_still_reaches_final():
    s = skf.polynomial_schedule(0.6, begin=0, end=10, every=4)
    assert at(s, 9).item() < 0.6 and torch.equal(at(s, 10), f32(0.6))


def test_initially_zero():
    s = skf.cubic_schedule(0.9, begin=10, end=20, initial=0.3, initially_zero=True)
    assert at(s, 9).item() == 0.0 and torch.equal(at(s, 10), f32(0.3))
    assert torch.equal(at(skf.cubic_schedule(0.9, begin=10, end=20, initial=0.3), 9), f32(0.3))


def test_matches_pytorch_cubic_sl_formula():
    from torch.ao.pruning.scheduler.cubic_scheduler import CubicSL

    t0, dt, n, s0, sf = 5, 3, 10, 0.1, 0.85
    s = skf.cubic_schedule(sf, begin=t0, end=t0 + dt * n, initial=s0)
    for t in range(t0, t0 + dt * n + 10):
        ref = CubicSL.sparsity_compute_fn(s0, sf, t, t0, dt, n)
        assert abs(at(s, t).item() - ref) < 1e-6, t


def test_nnz_from_a_schedule():
    scope = ScopeSpec(BlockSpec(View("w", (4, 8)), (1, 1)), (1, 4))
    o = skf.one_shot_schedule(0.5, at=3)
    assert o.nnz(torch.tensor(0), scope).item() == 4 and o.nnz(torch.tensor(3), scope).item() == 2
    assert o.nnz(torch.tensor(3), scope).dtype == torch.int64


def test_a_compiled_step_never_recompiles_over_100_steps():
    w = torch.randn(16, 32)
    scope = ScopeSpec(BlockSpec(View("w", (16, 32)), (1, 1)), ())
    sched = skf.cubic_schedule(0.9, begin=10, end=90, every=5)
    cnt = CompileCounter()

    @torch.compile(backend=cnt, fullgraph=True)
    def step(params, t):
        return skf.hard_threshold(params, scope, sparsity=sched(t))

    kept = []
    for t in range(100):
        out = step({"w": w}, torch.tensor(t))
        kept.append(int((out["w"] != 0).sum()))
    assert cnt.frame_count == 1
    assert kept[0] == 512 and kept[-1] == 512 - int(0.9 * 512)
    assert all(a >= b for a, b in zip(kept, kept[1:]))  # sparsity only grows


@pytest.mark.parametrize("bad", [
    lambda: skf.constant_schedule(1.5),
    lambda: skf.one_shot_schedule(0.5, at=-1),
    lambda: skf.polynomial_schedule(0.5, begin=10, end=10),
    lambda: skf.polynomial_schedule(0.5, begin=0, end=10, every=0),
    lambda: skf.polynomial_schedule(0.5, begin=0, end=10, power=0),
    lambda: skf.cubic_schedule(True, begin=0, end=10),
    lambda: skf.constant_schedule(0.5)(torch.tensor(1.0)),
    lambda: skf.constant_schedule(0.5)("3"),
])
def test_bad_arguments(bad):
    with pytest.raises(skf.ArgumentError):
        bad()
