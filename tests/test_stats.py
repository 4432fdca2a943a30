"""Block statistics against plain loops over blocks, scopes and couplings."""

import math

import pytest
import torch

import sparsekit_fx as skf
from sparsekit_fx import BlockCoupling, BlockSpec, ScopeCoupling, ScopeSpec, View

from . import reference as ref


def _pair24(name, m, k):
    """The seed's coupled 2:4 view: pairs of columns 8 apart."""
    return View(name, (m, k), (m, k // 16, 8, 2), (k, 16, 1, 8))


def block_cases():
    a = View("a", (6, 8))
    b = View("b", (8, 6))
    yield "plain", {"a": torch.randn(6, 8)}, BlockSpec(a, (2, 4))
    yield "elements", {"a": torch.randn(6, 8)}, BlockSpec(a, ())
    yield "view", {"w": torch.randn(4, 32)}, BlockSpec(_pair24("w", 4, 32), (1, 1, 1, 2))
    yield "strided", {"a": torch.randn(6, 8)}, BlockSpec(View("a", (6, 8), (6, 4), (8, 2), 1), (3, 2))
    yield "channels", {"a": torch.randn(6, 8), "b": torch.randn(8, 6)}, BlockCoupling(
        (BlockSpec(a, (1, -1)), BlockSpec(b, (-1, 1))), orders=((0, 1), (1, 0))
    )
    yield "3way", {"a": torch.randn(6, 8), "b": torch.randn(8, 6), "c": torch.randn(6, 8)}, BlockCoupling(
        (BlockSpec(a, (2, 2)), BlockSpec(b, (2, 2)), BlockSpec(View("c", (6, 8)), (2, 2))),
        orders=((0, 1), (1, 0), (0, 1)),
    )


CASES = list(block_cases())
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("p", [1, 2, 3, 0.5, math.inf, -math.inf, 0])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_block_norms_match_loop(case, p):
    _, params, block = case
    params = {k: v.double() for k, v in params.items()}
    if p == 0:
        params = {k: torch.where(v.abs() < 0.5, 0.0, v) for k, v in params.items()}
    got = skf.block_norms(params, block, p=p)
    exp = ref.block_reduce(params, block, lambda x: ref.lp(x, p))
    assert got.shape == block.grid_shape
    torch.testing.assert_close(got, exp)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_block_min_max_reduce_match_loop(case):
    _, params, block = case
    params = {k: v.double() for k, v in params.items()}
    torch.testing.assert_close(skf.block_min(params, block).double(), ref.block_reduce(params, block, torch.min))
    torch.testing.assert_close(skf.block_max(params, block).double(), ref.block_reduce(params, block, torch.max))
    got = skf.block_reduce(params, block, lambda b: (b ** 3).sum(-1))
    torch.testing.assert_close(got.double(), ref.block_reduce(params, block, lambda x: (x ** 3).sum()))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_values_score_other_tensors(case):
    _, params, block = case
    values = {k: torch.randn_like(v) for k, v in params.items()}
    torch.testing.assert_close(
        skf.block_norms(params, block, values=values).double(), ref.block_reduce(values, block, lambda x: ref.lp(x, 2))
    )


def scope_cases():
    for name, params, block in CASES:
        yield name, params, ScopeSpec(block, (1,))
    a, b = View("a", (4, 8)), View("b", (8, 4))
    s1 = ScopeSpec(BlockSpec(a, (1, 2)), (1, -1))
    s2 = ScopeSpec(BlockSpec(b, (2, 1)), (-1, 1))
    yield "scope-coupling", {"a": torch.randn(4, 8), "b": torch.randn(8, 4)}, ScopeCoupling((s1, s2), ((0, 1), (1, 0)))
    yield "2d-scopes", {"a": torch.randn(4, 8)}, ScopeSpec(BlockSpec(a, (1, 2)), (2, 2))


SCOPES = list(scope_cases())


@pytest.mark.parametrize("case", SCOPES, ids=[c[0] for c in SCOPES])
def test_scope_scores_match_loop(case):
    _, params, scope = case
    got = skf.scope_scores(params, scope)
    assert got.shape == tuple(scope.grid_shape) + (scope.numblk_per_scope(),)
    torch.testing.assert_close(got.double(), ref.scope_scores(params, scope))


def test_half_precision_accumulates_in_float32():
    x = torch.randn(16, 256)
    spec = BlockSpec(View("w", (16, 256)), (1, -1))
    got = skf.block_norms({"w": x.half()}, spec)
    assert got.dtype == torch.float32
    exp = skf.block_norms({"w": x.half().float()}, spec)
    torch.testing.assert_close(got, exp, rtol=1e-6, atol=0)


def test_norm_gradient_is_finite_at_zero_blocks():
    spec = BlockCoupling((BlockSpec(View("a", (4, 4)), (1, -1)), BlockSpec(View("b", (4, 4)), (1, -1))))
    a = torch.zeros(4, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, 4, dtype=torch.float64)
    b[0] = 0
    (g,) = torch.autograd.grad(skf.block_norms({"a": a, "b": b}, spec).sum(), a)
    assert torch.isfinite(g).all()


@pytest.mark.parametrize(
    "call, exc, arg",
    [
        (lambda: skf.block_norms({"w": torch.ones(4, 4)}, BlockSpec(View("v", (4, 4)), ())), skf.ParamError, "params"),
        (lambda: skf.block_norms({"w": torch.ones(4, 5)}, BlockSpec(View("w", (4, 4)), ())), skf.ShapeMismatchError, "params['w']"),
        (lambda: skf.block_norms({"w": torch.ones(4, 4, dtype=torch.int32)}, BlockSpec(View("w", (4, 4)), ())), skf.ParamError, "params['w']"),
        (lambda: skf.block_norms({"w": torch.ones(4, 4)}, BlockSpec(View("w", (4, 4)), ()), p=-1), skf.ArgumentError, "p"),
        (lambda: skf.block_norms({"w": torch.ones(4, 4)}, BlockSpec(View("w", (4, 4)), ()), values={}), skf.ParamError, "values"),
        (lambda: skf.block_norms({"w": torch.ones(4, 4)}, BlockSpec(View("w", (4, 4)), ()), values={"w": torch.ones(2)}), skf.ShapeMismatchError, "values['w']"),
        (lambda: skf.block_norms([torch.ones(4, 4)], BlockSpec(View("w", (4, 4)), ())), skf.ParamError, "params"),
        (lambda: skf.block_norms({"w": torch.ones(4, 4)}, "w"), skf.SpecError, "spec"),
        (lambda: skf.scope_scores({"w": torch.ones(4, 4)}, BlockSpec(View("w", (4, 4)), ())), skf.SpecError, "scope"),
        (lambda: skf.block_reduce({"w": torch.ones(4, 4)}, BlockSpec(View("w", (4, 4)), ()), lambda b: b), skf.ArgumentError, "fn"),
    ],
)
def test_stats_errors(call, exc, arg):
    with pytest.raises(exc) as e:
        call()
    assert f"'{arg}'" in str(e.value) and "Fix:" in str(e.value)
