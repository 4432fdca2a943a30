"""Every selection algorithm path against an independent reference, eager and compiled.

The paths (see sparsekit_fx/select.py): planes (n <= 8, packed words for 4
and 8), pairwise ranks (n <= 32), radix bisection with a chunked tie search
(longer rows, one or two chunk levels), the fused short-row ``topk_where``
kernel, and the packed bool stores of masks. The reference ranks by a stable
sort of the ordered keys (lower index first among ties), checked against the
plain-Python ordering of ``tests/reference.py`` on small rows.
"""

import math

import pytest
import torch

import sparsekit_fx as skf
from sparsekit_fx import select as S
from sparsekit_fx.layout import pack_bool

from . import reference as ref


def ref_topk(x, k):
    """Bool mask of the k largest per row (last dim), ties to the lower index, NaN highest."""
    keys = S.float_keys(x)
    order = torch.sort(keys, dim=-1, descending=True, stable=True).indices
    kk = torch.as_tensor(k).expand(x.shape[:-1]).unsqueeze(-1)
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(x.shape[-1]).expand_as(order))
    return ranks < kk


def nasty(rows, n, seed=0, dtype=torch.float32):
    """Heavy ties, both zeros, NaN and +-inf."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-3, 4, (rows, n), generator=g).to(dtype)
    x[x == 0] = torch.where(torch.rand(int((x == 0).sum()), generator=g) < 0.5, -0.0, 0.0).to(dtype)
    flat = x.view(-1)
    idx = torch.randperm(flat.numel(), generator=g)
    flat[idx[: max(1, n // 17)]] = math.nan
    flat[idx[n // 17: n // 17 + max(1, n // 23)]] = math.inf
    flat[idx[n // 17 + n // 23: n // 17 + n // 23 + max(1, n // 29)]] = -math.inf
    return x


def test_reference_agrees_with_plain_python_order():
    x = nasty(5, 23, seed=3)
    for k in (0, 1, 7, 23):
        exp = torch.zeros(x.shape, dtype=torch.bool)
        for i in range(x.shape[0]):
            for j in ref.topk_row(x[i].tolist(), k):
                exp[i, j] = True
        assert torch.equal(ref_topk(x, k), exp)


SIZES = [1, 2, 3, 4, 5, 8, 9, 16, 31, 32, 33, 64, 65, 100, 1000, 4097, 5000]


@pytest.mark.parametrize("n", SIZES)
def test_topk_keep_all_paths_exact(n):
    x = nasty(4, n, seed=n)
    for k in sorted({0, 1, n // 3, n // 2, max(n - 1, 0), n}):
        got = S.topk_keep(x, torch.tensor(k))
        assert got.dtype == torch.bool and got.shape == x.shape
        assert torch.equal(got, ref_topk(x, k)), (n, k)
    # per-row k
    kr = torch.tensor([0, n, n // 2, 1]).clamp(max=n)
    assert torch.equal(S.topk_keep(x, kr), ref_topk(x, kr))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n", [4, 20, 300])
def test_topk_keep_other_dtypes(n, dtype):
    x = nasty(3, n, seed=7, dtype=dtype)
    for k in (1, n // 2, n):
        assert torch.equal(S.topk_keep(x, torch.tensor(k)), ref_topk(x.float() if dtype != torch.float64 else x, k))


def test_long_row_two_level_tie_search():
    # 70000 > 64 * 64 * ...: ties spread over many 4096-chunks; the cut lands in a later chunk
    x = torch.zeros(70000)
    x[::7] = 1.0
    x[5] = math.nan
    for k in (1, 2, 5000, 10001, 10002, 69999):
        assert torch.equal(S.topk_keep(x, torch.tensor(k)), ref_topk(x, k)), k


def test_kth_largest_64bit_keys_and_extremes():
    x = torch.tensor([[-math.inf, -1e300, -0.0, 0.0, 5e-324, 1e300, math.inf, math.nan]], dtype=torch.float64)
    for k in range(1, 9):
        exp = torch.sort(S.float_keys(x), descending=True).values[0, k - 1]
        assert S.float_keys(skf.kth_largest(x, k)).item() == exp.item() or (k == 1 and skf.kth_largest(x, k).isnan())


@pytest.mark.parametrize("n", [2, 4, 8, 16])
@pytest.mark.parametrize("rows", [4, 12, 40])
def test_topk_where_fused_short_rows(n, rows):
    x = nasty(rows, 16, seed=n * rows).reshape(-1, n)  # total is a multiple of 16
    v = torch.randn(x.shape)
    for k in range(n + 1):
        exp = torch.where(ref_topk(x, k), v, 0.0)
        assert torch.equal(S.topk_where(x, torch.tensor(k), v), exp), (n, rows, k)


def test_topk_where_falls_back_for_other_shapes():
    x = nasty(3, 6, seed=1)  # n=6 and 18 entries: not fusable
    v = torch.randn(3, 6)
    assert torch.equal(S.topk_where(x, torch.tensor(2), v), torch.where(ref_topk(x, 2), v, 0.0))
    x = nasty(8, 4, seed=2)  # per-row k: not fusable
    kr = torch.arange(8) % 5
    v = torch.randn(8, 4)
    assert torch.equal(S.topk_where(x, kr, v), torch.where(ref_topk(x, kr), v, 0.0))


def test_pack_bool_round_trip():
    m = torch.rand(3, 5, 12) < 0.5
    assert torch.equal(pack_bool(m), m)
    assert torch.equal(pack_bool(m.float()), m)
    odd = torch.rand(3, 5) < 0.5
    assert torch.equal(pack_bool(odd), odd)


def test_hard_threshold_grad_through_fused_path():
    w = torch.randn(8, 16, dtype=torch.float64, requires_grad=True)
    spec = skf.ScopeSpec(skf.BlockSpec(skf.View("w", (8, 16)), (1, 1)), (1, 4))
    out = skf.hard_threshold({"w": w}, spec, nnz=2)["w"]
    (g,) = torch.autograd.grad(out.sum(), w)
    assert torch.equal(g, skf.masks({"w": w.detach()}, spec, nnz=2)["w"].double())


def test_vmap_over_the_fast_paths():
    x = torch.randn(3, 8, 16)
    spec = skf.ScopeSpec(skf.BlockSpec(skf.View("w", (8, 16)), (1, 1)), (1, 4))
    got = torch.vmap(lambda w: skf.hard_threshold({"w": w}, spec, nnz=2)["w"])(x)
    exp = torch.stack([skf.hard_threshold({"w": w}, spec, nnz=2)["w"] for w in x])
    assert torch.equal(got, exp)
    got = torch.vmap(lambda w: skf.masks({"w": w}, spec, nnz=2)["w"])(x)
    assert torch.equal(got, torch.stack([skf.masks({"w": w}, spec, nnz=2)["w"] for w in x]))
    rows = nasty(3, 300, seed=5)
    got = torch.vmap(lambda r: skf.topk_mask(r, 100))(rows)
    assert torch.equal(got, ref_topk(rows, 100))


def _specs(n):
    return {
        "2:4": (skf.ScopeSpec(skf.BlockSpec(skf.View("w", (n, n)), (1, 1)), (1, 4)), 2),
        "4:8 pairs": (skf.ScopeSpec(skf.BlockSpec(skf.View("w", (n, n)), (1, 2)), (1, 4)), 2),
        "4x4 half rows": (skf.ScopeSpec(skf.BlockSpec(skf.View("w", (n, n)), (4, 4)), (1, -1)), torch.tensor(n // 8)),
        "global": (skf.ScopeSpec(skf.BlockSpec(skf.View("w", (n, n)), (1, 1)), ()), torch.tensor(n * n // 2)),
    }


def _same(a, b):
    return a.dtype == b.dtype and torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())


def _check_compiled(names, ops):
    """Compiled results equal eager ones (which the loop references check elsewhere)."""
    n = 64
    w = nasty(n, n, seed=11)

    def masks_then_apply(w, k, spec):
        p = {"w": w}
        m = skf.masks(p, spec, nnz=k)["w"]
        return {"m": m, "applied": skf.apply_masks(p, {"w": m})["w"]}

    def hard(w, k, spec):
        return {"ht": skf.hard_threshold({"w": w}, spec, nnz=k)["w"]}

    # Small graphs: Inductor's compile time grows much faster than linearly with graph size.
    for name in names:
        spec, k = _specs(n)[name]
        for fn in [masks_then_apply] + ([hard] if "ht" in ops else []):
            torch._dynamo.reset()
            got, exp = torch.compile(fn, fullgraph=True)(w, k, spec), fn(w, k, spec)
            for key in got:
                assert _same(got[key], exp[key]), (name, key)


def test_compiled_short_row_paths():
    """Inductor, fullgraph: fused 2:4, packed planes (also for 2-element blocks), packed 4x4 apply.

    Masks are also consumed inside the graph (``apply_masks``): a packed bool
    mask read back by a later kernel once hit an Inductor codegen bug.
    """
    _check_compiled(["2:4", "4:8 pairs", "4x4 half rows"], ("ht", "m"))


def test_compiled_bisection_path():
    """Inductor, fullgraph: one global scope of 4096 entries (bisection, tie search, packed masks).

    Only masks: each bisection instance costs tens of seconds of compile time here.
    """
    _check_compiled(["global"], ("m",))


def test_changing_tensor_k_never_recompiles():
    from torch._dynamo.testing import CompileCounter

    cnt = CompileCounter()
    x = torch.randn(2, 300)
    f = torch.compile(lambda x, k: S.topk_keep(x, k), backend=cnt, fullgraph=True)
    for k in (0, 1, 150, 300):
        assert torch.equal(f(x, torch.tensor(k)), ref_topk(x, k))
    assert cnt.frame_count == 1
