"""Pure ops: golden masks with ties for the seed's patterns, loop references, purity."""

import math

import pytest
import torch

import sparsekit_fx as skf
from sparsekit_fx import BlockCoupling, BlockSpec, ScopeCoupling, ScopeSpec, View

from . import reference as ref

T, F = True, False


def nm(name, shape, block, scope):
    return ScopeSpec(BlockSpec(View(name, shape), block), scope)


# --------------------------------------------------------------------------
# golden masks (hand-written expectations, ties included)
# --------------------------------------------------------------------------


def test_golden_2_4_with_ties_and_nan():
    w = torch.tensor([
        [1.0, -1.0, 1.0, 0.5],      # three-way tie: lower indices win
        [0.0, 0.0, 0.0, 0.0],       # all tied at zero
        [0.1, -3.0, 2.0, 2.0],      # tie for second place
        [math.nan, 1.0, 2.0, 3.0],  # NaN ranks highest
    ])
    m = skf.masks({"w": w}, nm("w", (4, 4), (1, 1), (1, 4)), nnz=2)["w"]
    assert m.tolist() == [[T, T, F, F], [T, T, F, F], [F, T, T, F], [T, F, F, T]]


def test_golden_4_8_blocks_of_two():
    w = torch.tensor([[1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, -1.0]])
    m = skf.masks({"w": w}, nm("w", (1, 8), (1, 2), (1, 4)), nnz=2)["w"]
    assert m.tolist() == [[T, T, F, F, T, T, F, F]]


def test_golden_coupled_2_4_through_a_view():
    # columns c and c+8 form one block; blocks c=0..3 and c=4..7 are two scopes
    K = 16
    w = torch.zeros(1, K)
    w[0, :8] = torch.tensor([3.0, 1.0, 1.0, 2.0, 0.0, 0.0, 5.0, 0.0])
    w[0, 8:] = torch.tensor([0.0, 2.0, 2.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    # pair norms: c0=3, c1=sqrt5, c2=sqrt5, c3=2 | c4=1, c5=1, c6=5, c7=0
    view = View("w", (1, K), (1, K // 16, 8, 2), (K, 16, 1, 8))
    spec = ScopeSpec(BlockSpec(view, (1, 1, 1, 2)), (1, 1, 4, 1))
    m = skf.masks({"w": w}, spec, nnz=2)["w"][0]
    keep_pairs = [T, T, F, F, T, F, T, F]  # c1/c2 tie -> c1; c4/c5 tie -> c4
    assert m.tolist() == keep_pairs + keep_pairs


def _channel_spec(h=4, d=3):
    fc1 = BlockSpec(View("fc1.weight", (h, d)), (1, -1))
    fc2 = BlockSpec(View("fc2.weight", (d, h)), (-1, 1))
    return ScopeSpec(BlockCoupling((fc1, fc2), orders=((0, 1), (1, 0))), ())


def test_golden_channel_coupling_rows_with_columns():
    fc1 = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    fc2 = torch.tensor([[0.0, 0.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    # channel norms: sqrt(1), 2, 1, 3 -> keep channels 3 and 1
    out = skf.hard_threshold({"fc1.weight": fc1, "fc2.weight": fc2}, _channel_spec(), nnz=2)
    assert (out["fc1.weight"].abs().sum(1) > 0).tolist() == [F, T, F, F]
    m = skf.masks({"fc1.weight": fc1, "fc2.weight": fc2}, _channel_spec(), nnz=3)
    assert m["fc1.weight"][:, 0].tolist() == [T, T, F, T]  # tie 0 vs 2 -> channel 0
    assert m["fc2.weight"][0].tolist() == [T, T, F, T]


def test_golden_scope_coupling_shares_one_budget():
    a = torch.tensor([[4.0, 1.0, 1.0, 0.0]])
    b = torch.tensor([[1.0, 5.0, 0.0, 1.0]])
    sa = nm("a", (1, 4), (1, 1), (1, 4))
    sb = nm("b", (1, 4), (1, 1), (1, 4))
    m = skf.masks({"a": a, "b": b}, ScopeCoupling((sa, sb)), nnz=4)
    # pooled scores a:4,1,1,0 b:1,5,0,1 -> 5,4 then four-way tie at 1 -> a1, a2
    assert m["a"].tolist() == [[T, T, T, F]]
    assert m["b"].tolist() == [[F, T, F, F]]


# --------------------------------------------------------------------------
# loop references over many layouts
# --------------------------------------------------------------------------


def scope_cases():
    torch.manual_seed(0)
    q = lambda *s: torch.randint(-3, 4, s).float()  # small ints: plenty of ties
    yield "2:4", {"w": q(6, 16)}, nm("w", (6, 16), (1, 1), (1, 4))
    yield "4:8", {"w": q(6, 16)}, nm("w", (6, 16), (1, 2), (1, 4))
    yield "blocks4x4-row", {"w": q(8, 16)}, nm("w", (8, 16), (4, 4), (1, -1))
    yield "global", {"w": q(8, 16)}, nm("w", (8, 16), (1, 1), ())
    view = View("w", (4, 32), (4, 2, 8, 2), (32, 16, 1, 8))
    yield "coupled-2:4-view", {"w": q(4, 32)}, ScopeSpec(BlockSpec(view, (1, 1, 1, 2)), (1, 1, 4, 1))
    yield "channels", {"fc1.weight": q(6, 5), "fc2.weight": q(5, 6)}, ScopeSpec(
        BlockCoupling((BlockSpec(View("fc1.weight", (6, 5)), (1, -1)), BlockSpec(View("fc2.weight", (5, 6)), (-1, 1))),
                      orders=((0, 1), (1, 0))), (2,))
    yield "scope-coupling", {"a": q(4, 8), "b": q(8, 4)}, ScopeCoupling(
        (nm("a", (4, 8), (1, 2), (1, -1)), nm("b", (8, 4), (2, 1), (-1, 1))), orders=((0, 1), (1, 0)))
    qkv = [View("qkv", (12, 8), (4, 8), (8, 1), o) for o in (0, 32, 64)]
    yield "qkv-heads", {"qkv": q(12, 8)}, ScopeSpec(
        BlockCoupling(tuple(BlockSpec(v, (2, -1)) for v in qkv)), ())
    yield "strided-half", {"w": q(4, 16)}, nm("w", (4, 16), (1, 1), (1, 4)).__class__(
        BlockSpec(View("w", (4, 16), (4, 8), (16, 2), 1), (1, 2)), (1, -1))
    yield "large-scope", {"w": q(3, 200)}, nm("w", (3, 200), (1, 2), (1, -1))


CASES = list(scope_cases())
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("frac", [0.0, 0.25, 0.5, 1.0])
def test_masks_and_hard_threshold_match_loop(case, frac):
    _, params, scope = case
    n = scope.numblk_per_scope()
    nnz = int(round(frac * n))
    scores = ref.scope_scores(params, scope)
    keep = ref.keep_blocks(scope, scores, nnz=nnz)
    bm = skf.block_masks(params, scope, nnz=nnz)
    assert torch.equal(bm, keep)
    assert (bm.sum(-1) == nnz).all()
    m = skf.masks(params, scope, nnz=nnz)
    exp = ref.element_masks(params, scope, keep)
    assert m.keys() == exp.keys()
    for k in exp:
        assert m[k].dtype == torch.bool and torch.equal(m[k], exp[k]), k
    out = skf.hard_threshold(params, scope, nnz=torch.tensor(nnz))
    exp_out = ref.hard_threshold(params, scope, keep)
    for k in exp_out:
        assert torch.equal(out[k], exp_out[k]), k


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_thresholds_keep_scores_at_or_above(case):
    _, params, scope = case
    scores = ref.scope_scores(params, scope)
    thr = scores.median(-1).values  # a threshold equal to some scores
    keep = ref.keep_blocks(scope, scores, thresholds=thr)
    got = skf.block_masks(params, scope, thresholds=thr.float() if scores.dtype != torch.float64 else thr)
    assert torch.equal(got, keep)
    out = skf.hard_threshold(params, scope, thresholds=thr.to(torch.float32))
    exp = ref.hard_threshold(params, scope, keep)
    for k in exp:
        assert torch.equal(out[k], exp[k])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_values_and_scores_drive_selection(case):
    _, params, scope = case
    values = {k: torch.randn_like(v) for k, v in params.items()}
    keep = ref.keep_blocks(scope, ref.scope_scores(values, scope), nnz=1)
    assert torch.equal(skf.block_masks(params, scope, nnz=1, values=values), keep)
    scores = skf.scope_scores(params, scope, values=values)
    assert torch.equal(skf.block_masks(params, scope, nnz=1, scores=scores), keep)
    out = skf.hard_threshold(params, scope, nnz=1, values=values)
    exp = ref.hard_threshold(params, scope, keep)
    for k in exp:
        assert torch.equal(out[k], exp[k])


def test_per_scope_nnz_tensor():
    params = {"w": torch.randn(3, 8)}
    scope = nm("w", (3, 8), (1, 1), (1, -1))
    nnz = torch.tensor([[0], [3], [8]])
    bm = skf.block_masks(params, scope, nnz=nnz)
    assert bm.sum(-1).flatten().tolist() == [0, 3, 8]


def test_block_specs_accepted_as_scopes():
    w = torch.randn(4, 8)
    b = BlockSpec(View("w", (4, 8)), (1, 2))
    norms = skf.block_norms({"w": w}, b)
    thr = norms.median()
    out = skf.hard_threshold({"w": w}, b, thresholds=thr)
    kept = (out["w"].reshape(4, 4, 2).abs().sum(-1) > 0)
    assert torch.equal(kept, norms >= thr)
    out = skf.hard_threshold({"w": w}, b, nnz=5)  # one scope over all blocks
    assert int((out["w"].reshape(4, 4, 2).abs().sum(-1) > 0).sum()) == 5


def test_sparsity_argument_matches_nnz():
    params = {"w": torch.randn(4, 16)}
    scope = nm("w", (4, 16), (1, 1), (1, 8))
    a = skf.block_masks(params, scope, sparsity=0.3)
    b = skf.block_masks(params, scope, nnz=8 - int(0.3 * 8))
    c = skf.block_masks(params, scope, sparsity=torch.tensor(0.3))
    assert torch.equal(a, b) and torch.equal(a, c)


def test_ops_are_pure_and_pass_untouched_entries_through():
    params = {"w": torch.randn(4, 8), "other": torch.randn(3), "b": torch.randn(4)}
    before = {k: v.clone() for k, v in params.items()}
    scope = nm("w", (4, 8), (1, 1), (1, 4))
    out = skf.hard_threshold(params, scope, nnz=2)
    assert out.keys() == params.keys()
    assert out["other"] is params["other"] and out["b"] is params["b"] and out["w"] is not params["w"]
    m = skf.masks(params, scope, nnz=2)
    out2 = skf.apply_masks(params, m)
    assert torch.equal(out2["w"], out["w"]) and out2["other"] is params["other"]
    out3 = skf.apply_masks(params, {"w": m["w"].float()})
    assert torch.equal(out3["w"], out["w"])
    for k in params:
        assert torch.equal(params[k], before[k])


def test_partial_views_leave_the_rest_of_the_parameter():
    w = torch.randn(6, 4)
    view = View("w", (6, 4), (2, 4), (4, 1), 8)  # rows 2..3 only
    scope = ScopeSpec(BlockSpec(view, (1, 1)), (1, 4))
    out = skf.hard_threshold({"w": w}, scope, nnz=0)
    assert torch.equal(out["w"][:2], w[:2]) and torch.equal(out["w"][4:], w[4:])
    assert (out["w"][2:4] == 0).all()
    m = skf.masks({"w": w}, scope, nnz=0)["w"]
    assert m[:2].all() and m[4:].all() and not m[2:4].any()


def test_kept_nan_and_inf_survive_pruned_ones_become_zero():
    w = torch.tensor([[math.nan, 1.0, math.inf, 0.5]])
    out = skf.hard_threshold({"w": w}, nm("w", (1, 4), (1, 1), (1, 4)), nnz=2)["w"]
    assert out[0, 0].isnan() and out[0, 2] == math.inf and out[0, 1] == 0 and out[0, 3] == 0
    w = torch.tensor([[math.nan, 1.0, 2.0, 3.0]])
    out = skf.hard_threshold({"w": w}, nm("w", (1, 4), (1, 1), (1, 4)), nnz=0)["w"]
    assert (out == 0).all()


def test_hard_threshold_gradient_is_the_mask():
    w = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    scope = nm("w", (4, 8), (1, 2), (1, 4))
    out = skf.hard_threshold({"w": w}, scope, nnz=2)["w"]
    (g,) = torch.autograd.grad(out.sum(), w)
    m = skf.masks({"w": w.detach()}, scope, nnz=2)["w"]
    assert torch.equal(g, m.double())


def test_half_precision_params():
    w = torch.randn(4, 16)
    scope = nm("w", (4, 16), (1, 1), (1, 4))
    for dt in (torch.float16, torch.bfloat16):
        out = skf.hard_threshold({"w": w.to(dt)}, scope, nnz=2)["w"]
        assert out.dtype == dt
        exp = skf.hard_threshold({"w": w.to(dt).float()}, scope, nnz=2)["w"].to(dt)
        assert torch.equal(out, exp)


W = {"w": torch.randn(4, 8)}
S = nm("w", (4, 8), (1, 1), (1, 4))


@pytest.mark.parametrize(
    "call, exc, arg",
    [
        (lambda: skf.hard_threshold(W, S), skf.ArgumentError, "nnz/sparsity/thresholds"),
        (lambda: skf.hard_threshold(W, S, nnz=1, thresholds=0.1), skf.ArgumentError, "nnz/sparsity/thresholds"),
        (lambda: skf.hard_threshold(W, S, nnz=5), skf.ArgumentError, "nnz"),
        (lambda: skf.hard_threshold(W, S, nnz=-1), skf.ArgumentError, "nnz"),
        (lambda: skf.hard_threshold(W, S, nnz=torch.ones(3, dtype=torch.long)), skf.ShapeMismatchError, "nnz"),
        (lambda: skf.hard_threshold(W, S, sparsity=1.5), skf.ArgumentError, "sparsity"),
        (lambda: skf.hard_threshold(W, S, thresholds=torch.ones(3)), skf.ShapeMismatchError, "thresholds"),
        (lambda: skf.hard_threshold(W, S, thresholds="x"), skf.ArgumentError, "thresholds"),
        (lambda: skf.hard_threshold(W, S, nnz=1, values=W, scores=torch.ones(4, 2, 4)), skf.ArgumentError, "values/scores"),
        (lambda: skf.hard_threshold(W, S, nnz=1, scores=torch.ones(4, 4)), skf.ShapeMismatchError, "scores"),
        (lambda: skf.hard_threshold({}, S, nnz=1), skf.ParamError, "params"),
        (lambda: skf.hard_threshold(W, "w", nnz=1), skf.SpecError, "spec"),
        (lambda: skf.masks(W, S, nnz=1, values={"w": torch.ones(2)}), skf.ShapeMismatchError, "values['w']"),
        (lambda: skf.apply_masks(W, [1]), skf.ParamError, "masks"),
        (lambda: skf.apply_masks(W, {"w": torch.ones(2, dtype=torch.bool)}), skf.ShapeMismatchError, "masks['w']"),
        (lambda: skf.apply_masks(W, {"v": torch.ones(2, dtype=torch.bool)}), skf.ParamError, "params"),
    ],
)
def test_op_errors(call, exc, arg):
    before = W["w"].clone()
    with pytest.raises(exc) as e:
        call()
    assert f"'{arg}'" in str(e.value) and "Fix:" in str(e.value), str(e.value)
    assert torch.equal(W["w"], before)
