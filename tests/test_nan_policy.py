"""The NaN/Inf policy (README, "NaN and Inf"), golden cases, eager and compiled.

Pure ops never raise on tensor values (they must compile); they treat NaN and
Inf deterministically instead:

* scores: a block holding NaN scores NaN; holding +-Inf (and no NaN), +inf;
* ranking: NaN ranks above +inf, -0.0 equals +0.0, ties break by index;
* thresholds: a NaN score is kept against every non-NaN threshold; a NaN
  threshold keeps only NaN scores;
* hard_threshold: kept elements are returned bit for bit (NaN, Inf and -0.0
  included), pruned elements become exactly +0.0;
* soft_threshold: a block whose values (or conditioner) hold NaN or Inf is
  returned bit for bit; other blocks are thresholded as usual;
* check_finite(params, spec) is the explicit, eager check that raises.
"""

from __future__ import annotations

import math

import pytest
import torch

import sparsekit_fx as skf
from sparsekit_fx import BlockSpec, ScopeSpec, View

from .strategies import bitwise_equal

NAN, INF = math.nan, math.inf
T, F = True, False
S24 = ScopeSpec(BlockSpec(View("w", (4, 4)), (1, 1)), (1, 4))
ROWS = ScopeSpec(BlockSpec(View("w", (3, 4)), (1, 2)), (1, -1))  # two blocks of two per row


def test_block_scores_of_nan_and_inf():
    w = torch.tensor([[1.0, NAN, 2.0, 2.0], [INF, 1.0, -INF, 0.0], [NAN, INF, 3.0, 4.0]])
    for p in (1, 2, 3, INF):
        s = skf.block_norms({"w": w}, ROWS.block, p=p)
        assert math.isnan(s[0, 0]) and s[1, 0] == INF and s[1, 1] == INF and math.isnan(s[2, 0])
    assert math.isnan(skf.block_max({"w": w}, ROWS.block)[0, 0])
    assert math.isnan(skf.block_min({"w": w}, ROWS.block)[2, 0])


def test_ranking_nan_above_inf_and_signed_zeros_tie():
    w = torch.tensor([
        [NAN, INF, 5.0, 1.0],
        [INF, NAN, INF, NAN],     # NaN, NaN, then the first inf
        [-0.0, 0.0, -0.0, 0.0],   # all tied: the first two
        [1.0, -INF, NAN, 2.0],    # |-inf| = inf
    ])
    m = skf.masks({"w": w}, S24, nnz=2)["w"]
    assert m.tolist() == [[T, T, F, F], [F, T, F, T], [T, T, F, F], [F, T, T, F]]
    m3 = skf.masks({"w": w}, S24, nnz=3)["w"]
    assert m3[1].tolist() == [T, T, F, T]


def test_thresholds_keep_nan_scores_and_a_nan_threshold_keeps_only_them():
    w = torch.tensor([[NAN, 1.0, 2.0, INF]])
    s = ScopeSpec(BlockSpec(View("w", (1, 4)), (1, 1)), (1, 1))
    assert skf.block_masks({"w": w}, s, thresholds=1.5).flatten().tolist() == [T, F, T, T]
    assert skf.block_masks({"w": w}, s, thresholds=INF).flatten().tolist() == [T, F, F, T]
    assert skf.block_masks({"w": w}, s, thresholds=torch.tensor(NAN)).flatten().tolist() == [T, F, F, F]


def test_kth_largest_and_topk_rank_nan_first():
    x = torch.tensor([[1.0, NAN, INF, -INF, 0.0]])
    assert math.isnan(skf.kth_largest(x, 1)) and skf.kth_largest(x, 2) == INF and skf.kth_largest(x, 5) == -INF
    assert skf.topk_mask(x, 2).tolist() == [[F, T, T, F, F]]


def _bits(x):
    return x.view(torch.int32)


def test_hard_threshold_keeps_bits_and_prunes_to_positive_zero():
    neg_nan = -torch.tensor(NAN)  # a NaN with the sign bit set
    w = torch.tensor([[NAN, 1.0, -0.0, -3.0], [-0.5, INF, -INF, 0.25], [2.0, -0.0, -0.0, 1.0], [0.0] * 4])
    w[3, 0] = neg_nan
    out = skf.hard_threshold({"w": w}, S24, nnz=2)["w"]
    keep = skf.masks({"w": w}, S24, nnz=2)["w"]
    assert torch.equal(_bits(out)[keep], _bits(w)[keep]), "kept elements must be returned bit for bit"
    assert (_bits(out)[~keep] == 0).all(), "pruned elements must be exactly +0.0"


@pytest.mark.parametrize("conditioned", [False, True], ids=["euclidean", "preconditioned"])
@pytest.mark.parametrize("block", [(1, 2), (1, 1)], ids=["pairs", "elements"])
def test_soft_threshold_passes_non_finite_blocks_through(conditioned, block):
    w = torch.tensor([[1.0, NAN, 3.0, 0.1], [INF, 2.0, -0.2, 0.1], [-INF, NAN, 4.0, -4.0]])
    w[0, 1] = -torch.tensor(NAN)
    spec = BlockSpec(View("w", (3, 4)), block)
    h = {"w": torch.full((3, 4), 2.0)} if conditioned else None
    out = skf.soft_threshold({"w": w}, spec, 0.5, conditioners=h)["w"]
    finite = skf.block_norms({"w": w}, spec).isfinite()
    fin_el = finite.repeat_interleave(block[0], 0).repeat_interleave(block[1], 1)
    assert torch.equal(_bits(out)[~fin_el], _bits(w)[~fin_el])
    ref = skf.soft_threshold({"w": torch.where(fin_el, w, 0.0)}, spec, 0.5, conditioners=h)["w"]
    assert torch.equal(out[fin_el], ref[fin_el])


def test_soft_threshold_passes_blocks_with_a_non_finite_conditioner_through():
    w = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    h = torch.tensor([[2.0, NAN, 2.0, 2.0]])
    out = skf.soft_threshold({"w": w}, BlockSpec(View("w", (1, 4)), (1, 2)), 0.5, conditioners={"w": h})["w"]
    assert torch.equal(out[0, :2], w[0, :2]) and not torch.equal(out[0, 2:], w[0, 2:])


def test_check_finite_names_the_parameter_index_and_counts():
    w = torch.zeros(4, 4)
    w[2, 3], w[3, 0] = INF, NAN
    skf.check_finite({"w": w}, ScopeSpec(BlockSpec(View("w", (4, 4), (2, 4), (4, 1)), (1, 1)), (1, 4)))  # rows 0-1
    with pytest.raises(skf.NonFiniteError) as e:
        skf.check_finite({"w": w}, S24)
    msg = str(e.value)
    assert "params['w']" in msg and "2 non-finite (1 NaN, 1 Inf)" in msg and "first at index (2, 3) = inf" in msg
    assert isinstance(e.value, ValueError)
    with pytest.raises(skf.NonFiniteError, match="conditioners"):
        skf.check_finite({"w": torch.zeros(4, 4)}, S24, conditioners={"w": w})


def test_check_finite_is_eager_only_and_ops_never_raise_on_values():
    w = torch.full((4, 4), NAN)
    skf.hard_threshold({"w": w}, S24, nnz=2)  # no error: the policy is deterministic behaviour
    skf.soft_threshold({"w": w}, S24, 0.1)


def _policy_step(params, spec, nnz, t):
    return skf.hard_threshold(params, spec, nnz=nnz), skf.soft_threshold(params, spec, t)


def test_compiled_ops_follow_the_same_policy_bit_for_bit():
    spec = ScopeSpec(BlockSpec(View("w", (8, 16)), (1, 2)), (1, 4))
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 16, generator=g)
    pick = torch.randint(0, 10, (8, 16), generator=g)
    w = torch.where(pick == 0, NAN, torch.where(pick == 1, INF, torch.where(pick == 2, -0.0, w)))
    w[0, 0] = -torch.tensor(NAN)
    step = skf.compile_step(_policy_step, spec)
    eager = _policy_step({"w": w}, spec, 2, 0.3)
    compiled = step({"w": w}, torch.tensor(2), torch.tensor(0.3))
    assert bitwise_equal(compiled[0]["w"], eager[0]["w"])
    fin = skf.block_norms({"w": w}, spec).isfinite().repeat_interleave(2, 1)
    assert bitwise_equal(compiled[1]["w"][~fin], eager[1]["w"][~fin])  # passed through bit for bit
    torch.testing.assert_close(compiled[1]["w"], eager[1]["w"], equal_nan=True)  # rounding may differ
