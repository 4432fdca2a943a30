"""Selection: k-th largest, exact top-k with index tie-breaking, thresholds, NaN order."""

import math

import pytest
import torch

import sparsekit_fx as skf
from sparsekit_fx.select import SMALL_N, float_keys, keys_to_float

from . import reference as ref


def _ref_mask(x, k):
    out = torch.zeros(x.shape, dtype=torch.bool)
    for i in range(x.shape[0]):
        for j in ref.topk_row(x[i].tolist(), k if isinstance(k, int) else int(k[i])):
            out[i, j] = True
    return out


def test_keys_are_monotone_and_invertible():
    x = torch.tensor([-math.inf, -3.0, -1e-30, -0.0, 0.0, 1e-30, 2.0, math.inf, math.nan])
    k = float_keys(x)
    assert (k[1:-1] >= k[:-2]).all()
    assert k[3] == k[4]  # -0.0 == +0.0
    assert k[-1] > k[-2]  # NaN above +inf
    back = keys_to_float(k)
    assert torch.equal(back[:-1], torch.where(x[:-1] == 0, 0.0, x[:-1])) and back[-1].isnan()
    d = torch.tensor([-2.5, 0.0, 7.0, math.nan], dtype=torch.float64)
    assert float_keys(d).dtype == torch.int64 and torch.equal(keys_to_float(float_keys(d))[:3], d[:3])


@pytest.mark.parametrize("n", [4, SMALL_N, SMALL_N + 1, 100, 5000])
@pytest.mark.parametrize("k", ["zero", "one", "half", "all"])
def test_topk_mask_exact_with_heavy_ties(n, k):
    torch.manual_seed(n)
    x = torch.randint(0, 4, (6, n)).float()  # many ties
    kk = {"zero": 0, "one": 1, "half": n // 2, "all": n}[k]
    got = skf.topk_mask(x, kk)
    assert (got.sum(-1) == kk).all()
    assert torch.equal(got, _ref_mask(x, kk))
    # tensor k gives the same answer
    assert torch.equal(skf.topk_mask(x, torch.tensor(kk)), got)


def test_topk_mask_per_row_tensor_k_and_dim():
    torch.manual_seed(1)
    x = torch.randn(5, 70)
    k = torch.tensor([0, 3, 35, 69, 70])
    got = skf.topk_mask(x, k)
    assert torch.equal(got.sum(-1), k) and torch.equal(got, _ref_mask(x, k))
    assert torch.equal(skf.topk_mask(x.t(), 3, dim=0), skf.topk_mask(x, 3).t())


def test_topk_mask_long_rows_use_chunked_counts():
    torch.manual_seed(2)
    x = torch.randint(0, 50, (2, 40000)).float()
    got = skf.topk_mask(x, 12345)
    assert (got.sum(-1) == 12345).all()
    for i in range(2):
        order = sorted(range(x.shape[1]), key=lambda j: (-x[i, j].item(), j))[:12345]
        exp = torch.zeros(x.shape[1], dtype=torch.bool)
        exp[order] = True
        assert torch.equal(got[i], exp)


def test_nan_ranks_highest_and_is_deterministic():
    x = torch.tensor([[1.0, math.nan, 3.0, math.nan, 2.0]])
    assert skf.topk_mask(x, 1).tolist() == [[False, True, False, False, False]]
    assert skf.topk_mask(x, 3).tolist() == [[False, True, True, True, False]]
    assert skf.kth_largest(x, 1).isnan().all() and skf.kth_largest(x, 3).item() == 3.0


@pytest.mark.parametrize("n", [7, 300, 20000])
def test_kth_largest_matches_sort(n):
    torch.manual_seed(n)
    x = torch.randn(3, n)
    for k in (1, n // 3 + 1, n):
        exp = x.sort(-1, descending=True).values[:, k - 1]
        assert torch.equal(skf.kth_largest(x, k), exp)
        assert torch.equal(skf.kth_largest(x, torch.tensor(k)), exp)
    xd = x.double()
    assert torch.equal(skf.kth_largest(xd, 2), xd.sort(-1, descending=True).values[:, 1])
    assert torch.equal(skf.kth_largest(x.t(), 2, dim=0), skf.kth_largest(x, 2))


def test_kth_largest_tensor_k_is_clamped():
    x = torch.arange(10.0)
    assert skf.kth_largest(x, torch.tensor(0)).item() == 9.0
    assert skf.kth_largest(x, torch.tensor(99)).item() == 0.0


def test_kth_mid_is_weighted_midpoint():
    x = torch.tensor([[5.0, 1.0, 3.0, 4.0]])
    assert skf.kth_mid(x, 2).item() == pytest.approx(3.5)
    assert skf.kth_mid(x, 2, k_weight=3.0).item() == pytest.approx((4.0 + 3 * 3.0) / 4)
    assert skf.kth_mid(x, torch.tensor(1)).item() == pytest.approx(4.5)


def test_threshold_mask_keeps_equal_scores():
    x = torch.tensor([0.5, 1.0, 1.5, math.nan])
    assert skf.threshold_mask(x, 1.0).tolist() == [False, True, True, True]


def test_sparsity_to_nnz_matches_seed_formula():
    s = skf.ScopeSpec(skf.BlockSpec(skf.View("w", (1, 10)), ()), ())
    for sp in (0.0, 0.25, 0.3, 0.5, 0.57, 0.99, 1.0):
        assert skf.sparsity_to_nnz(s, sp) == max(10 - int(sp * 10), 0)
        assert skf.sparsity_to_nnz(s, torch.tensor(sp, dtype=torch.float64)).item() == max(10 - int(sp * 10), 0)


@pytest.mark.parametrize(
    "call, arg",
    [
        (lambda: skf.topk_mask(torch.ones(4), 5), "k"),
        (lambda: skf.topk_mask(torch.ones(4), -1), "k"),
        (lambda: skf.topk_mask(torch.ones(4), 1.5), "k"),
        (lambda: skf.topk_mask(torch.ones(4), torch.tensor(1.0)), "k"),
        (lambda: skf.topk_mask(torch.ones(4, dtype=torch.int64), 1), "scores"),
        (lambda: skf.topk_mask(torch.ones(4), 1, dim=3), "dim"),
        (lambda: skf.kth_largest(torch.ones(4), 0), "k"),
        (lambda: skf.kth_mid(torch.ones(4), 4), "k"),
        (lambda: skf.kth_mid(torch.ones(4), 1, k_weight=-1), "k_weight"),
        (lambda: skf.sparsity_to_nnz(skf.ScopeSpec(skf.BlockSpec(skf.View("w", (4,)), ()), ()), 1.5), "sparsity"),
        (lambda: skf.sparsity_to_nnz(skf.ScopeSpec(skf.BlockSpec(skf.View("w", (4,)), ()), ()), torch.tensor(1)), "sparsity"),
    ],
)
def test_selection_errors(call, arg):
    with pytest.raises(skf.ArgumentError) as e:
        call()
    assert f"'{arg}'" in str(e.value) and "Fix:" in str(e.value)
