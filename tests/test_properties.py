"""Property-based tests over random layouts (hypothesis), all eager.

Layouts come from ``tests/strategies.py``: parameters of 1-4 dims; whole,
reshaped, permuted and gather views (strided, with gaps and offsets); block
and scope shapes with ``-1`` and missing trailing dims; block and scope
couplings with random orders, including disjoint views of one parameter;
float16, bfloat16, float32 and float64 data, tie-rich or continuous, with
NaN/Inf/-0.0 sprinkled in some examples.

Every op is compared with the plain loops of ``tests/reference.py``.
Selection is compared *given the library's scores* (selection is exact) and
the scores are compared with the loop's float64 scores within a tolerance
(exactly where the arithmetic is exact: integer data with p in {1, inf, 0}).
Each property also checks that its inputs are left bitwise unchanged.

Example counts come from the hypothesis profile (tests/conftest.py).
"""

from __future__ import annotations

import math

import torch
from hypothesis import assume, given, note
from hypothesis import strategies as st

import sparsekit_fx as skf
from sparsekit_fx.engine import batching
from sparsekit_fx.layout import from_blocks, from_scopes, read_view, to_blocks, to_scopes, write_views
from sparsekit_fx.stats import blocks_of

from . import reference as ref
from .strategies import HALF, DTYPES, assert_unchanged, bitwise_equal, data, layouts, make_tensor, scope_layouts, snapshot

P_VALUES = (1, 2, 3, math.inf, -math.inf, 0)


def _tol(dtype):
    """Tolerance of scores against the float64 loop (accumulation in float32 or float64)."""
    return dict(rtol=1e-12, atol=0.0) if dtype == torch.float64 else dict(rtol=2e-6, atol=1e-30)


def _exact(params, p):
    """Whether the library's scores must equal the loop's exactly: integer data, exact arithmetic."""
    ints = all(bool((v[torch.isfinite(v)] == v[torch.isfinite(v)].round()).all()) for v in params.values())
    return ints and p in (1, math.inf, -math.inf, 0)


def same_values(a, b):
    """Equal values, NaN equal to NaN (the sign of zero is ignored)."""
    return a.shape == b.shape and a.dtype == b.dtype and bool(((a == b) | (a.isnan() & b.isnan())).all())


# --------------------------------------------------------------------------
# 1. layout: views, blocks and scopes round-trip exactly
# --------------------------------------------------------------------------


@given(layouts("block"))
def test_views_blocks_and_scopes_round_trip_exactly(layout):
    params, block = layout
    snap = snapshot(params)
    specs = block.specs if isinstance(block, skf.BlockCoupling) else (block,)
    for s in specs:
        v, x = s.view, params[s.view.param]
        got = read_view(x, v)
        assert bitwise_equal(got, ref.view_tensor(x, v)), "read_view differs from as_strided"
        back = write_views(x, [v], [got])
        assert bitwise_equal(back, x.contiguous()), "write_views(read_view) is not the identity"
        b = to_blocks(got, s.shape)
        assert b.shape == tuple(s.grid_shape) + (s.numel_per_block(),)
        assert bitwise_equal(from_blocks(b, s.shape), got), "from_blocks(to_blocks) is not the identity"
        g = torch.arange(s.numblk()).reshape(s.grid_shape)
        for sh in {(1,) * s.ndim, tuple(s.grid_shape)}:
            assert torch.equal(from_scopes(to_scopes(g, sh), sh), g)
    # every coupled block holds exactly the loop's elements, in spec order
    xs = [read_view(params[v.param], v) for v in block.views()]
    got = blocks_of(block, xs)
    for cidx in ref.grid_iter(block.grid_shape):
        assert bitwise_equal(got[cidx], ref.block_elements(params, block, cidx))
    assert_unchanged(params, snap)


# --------------------------------------------------------------------------
# 2. statistics
# --------------------------------------------------------------------------


@given(layouts("block"), st.sampled_from(P_VALUES))
def test_block_statistics_match_loop(layout, p):
    params, block = layout
    snap = snapshot(params)
    got = skf.block_norms(params, block, p=p)
    exp = ref.block_reduce(params, block, lambda x: ref.lp(x, p))
    assert got.shape == tuple(block.grid_shape)
    assert got.dtype == (torch.float64 if params["untouched"].dtype == torch.float64 else torch.float32)
    if _exact(params, p):
        torch.testing.assert_close(got.double(), exp, rtol=0, atol=0, equal_nan=True)
    else:
        torch.testing.assert_close(got.double(), exp, equal_nan=True, **_tol(params["untouched"].dtype))
    # min and max select an element: exact in every dtype
    for fn, red in ((skf.block_min, torch.min), (skf.block_max, torch.max)):
        got = fn(params, block)
        exp = ref.block_reduce(params, block, red)  # torch.min/max propagate NaN, as the ops do
        assert got.dtype == params["untouched"].dtype
        torch.testing.assert_close(got.double(), exp, rtol=0, atol=0, equal_nan=True)
    got = skf.block_reduce(params, block, lambda b: b.double().abs().sum(-1))
    exp = ref.block_reduce(params, block, lambda x: x.double().abs().sum())
    torch.testing.assert_close(got, exp, equal_nan=True)
    assert_unchanged(params, snap)


# --------------------------------------------------------------------------
# 3. selection with nnz: exact budgets, masks constant on blocks, loop parity
# --------------------------------------------------------------------------


def _check_masks_against_loop(params, scope, keep, m, out):
    exp_m = ref.element_masks(params, scope, keep)
    assert m.keys() == exp_m.keys()
    for k in exp_m:
        assert m[k].dtype == torch.bool and torch.equal(m[k], exp_m[k]), k
    exp_out = ref.hard_threshold(params, scope, keep)
    assert out.keys() == params.keys()
    for k in exp_out:
        assert bitwise_equal(out[k], exp_out[k]), k
    assert out["untouched"] is params["untouched"]
    # masks are constant on every (coupled) block
    fm = {k: v.to(torch.float64) for k, v in m.items()}
    block = scope.block if isinstance(scope, skf.ScopeSpec) else None
    blocks = [block] if block is not None else [s.block for s in scope.scopes]
    for b in blocks:
        for cidx in ref.grid_iter(b.grid_shape):
            e = ref.block_elements(fm, b, cidx)
            assert bool((e == e[0]).all()), f"mask not constant on block {cidx}"


@given(layouts("scope"), st.data())
def test_nnz_selection_is_exact_and_matches_loop(layout, d):
    params, scope = layout
    n = scope.numblk_per_scope()
    mode = d.draw(st.sampled_from(["int", "tensor0", "per_scope", "sparsity"]))
    if mode == "int":
        nnz = d.draw(st.integers(0, n))
    elif mode == "tensor0":
        nnz = torch.tensor(d.draw(st.integers(0, n)))
    elif mode == "per_scope":
        nnz = torch.tensor(d.draw(st.lists(st.integers(0, n), min_size=scope.numscp(), max_size=scope.numscp())),
                           dtype=torch.int64).reshape(scope.grid_shape)
    else:
        sp = d.draw(st.floats(0, 1))
        nnz = skf.sparsity_to_nnz(scope, sp)
    p = d.draw(st.sampled_from((2, 1, math.inf)))
    note(f"scope={scope}\nnnz={nnz} p={p}")
    snap = snapshot(params)
    scores = skf.scope_scores(params, scope, p=p)
    exp_scores = ref.scope_scores(params, scope, p=p)
    if _exact(params, p):
        torch.testing.assert_close(scores.double(), exp_scores, rtol=0, atol=0, equal_nan=True)
    else:
        torch.testing.assert_close(scores.double(), exp_scores, equal_nan=True, **_tol(params["untouched"].dtype))
    keep = skf.block_masks(params, scope, nnz=nnz, p=p)
    assert keep.dtype == torch.bool and keep.shape == scores.shape
    want = nnz if not torch.is_tensor(nnz) else nnz.expand(scope.grid_shape)
    assert torch.equal(keep.sum(-1), torch.as_tensor(want).expand(scope.grid_shape)), "budget not exact"
    assert torch.equal(keep, ref.keep_blocks(scope, scores, nnz=nnz)), "selection differs from the loop"
    if _exact(params, p):  # exact scores: ties among the loop's own scores break by index too
        assert torch.equal(keep, ref.keep_blocks(scope, exp_scores, nnz=nnz))
    m = skf.masks(params, scope, nnz=nnz, p=p)
    out = skf.hard_threshold(params, scope, nnz=nnz, p=p)
    _check_masks_against_loop(params, scope, keep, m, out)
    # scores= and values= drive the same selection
    assert torch.equal(skf.block_masks(params, scope, nnz=nnz, scores=scores), keep)
    assert torch.equal(skf.block_masks(params, scope, nnz=nnz, p=p, values=params), keep)
    assert_unchanged(params, snap)


@given(layouts("scope"), st.data())
def test_threshold_selection_matches_loop(layout, d):
    params, scope = layout
    snap = snapshot(params)
    scores = skf.scope_scores(params, scope)
    finite = scores[torch.isfinite(scores)]
    how = d.draw(st.sampled_from(["score", "number", "per_scope", "nan", "inf"]))
    if how == "score" and finite.numel():  # a threshold equal to some score: ties are kept
        thr = finite.reshape(-1)[d.draw(st.integers(0, finite.numel() - 1))]
    elif how == "per_scope":
        thr = scores.nan_to_num(0.0, 0.0, 0.0).median(-1).values
    elif how == "nan":
        thr = torch.tensor(math.nan)
    elif how == "inf":
        thr = math.inf
    else:
        thr = d.draw(st.floats(0, 10))
    keep = skf.block_masks(params, scope, thresholds=thr)
    t = torch.as_tensor(thr, dtype=scores.dtype)
    assert torch.equal(keep, ref.keep_blocks(scope, scores, thresholds=t))
    m = skf.masks(params, scope, thresholds=thr)
    out = skf.hard_threshold(params, scope, thresholds=thr)
    _check_masks_against_loop(params, scope, keep, m, out)
    assert_unchanged(params, snap)


# --------------------------------------------------------------------------
# 4. algebra: idempotence, masks vs hard_threshold, trees, batching
# --------------------------------------------------------------------------


@given(layouts("scope"), st.data())
def test_hard_threshold_is_idempotent_and_equals_apply_masks(layout, d):
    params, scope = layout
    k = d.draw(st.integers(0, scope.numblk_per_scope()))
    snap = snapshot(params)
    once = skf.hard_threshold(params, scope, nnz=k)
    twice = skf.hard_threshold(once, scope, nnz=k)
    for name in params:
        # equal values: a kept all-zero block may trade places with a pruned (now zero) one of lower index,
        # so a kept -0.0 may become +0.0; nothing else may change
        assert same_values(twice[name], once[name]), name
    applied = skf.apply_masks(params, skf.masks(params, scope, nnz=k))
    for name in params:
        assert bitwise_equal(applied[name], once[name]), name
    assert_unchanged(params, snap)


@st.composite
def trees(draw):
    """Two or three scope layouts over shared parameter names (so later specs see earlier results)."""
    specs, shapes = [], {}
    for i in range(draw(st.integers(2, 3))):
        sh, spec = draw(scope_layouts())
        ren = {n: f"t{i}_{n}" for n in sh}  # fresh names for this spec ...
        if i and draw(st.booleans()):  # ... except one renamed onto an earlier parameter of its shape
            for old, shape in sorted(sh.items()):
                same = sorted(n for n, s in shapes.items() if s == shape)
                if same:
                    ren[old] = draw(st.sampled_from(same))
                    break
        text = skf.specs_to_json(spec)
        for a, b in ren.items():
            text = text.replace(f'"{a}"', f'"{b}"')
        specs.append(skf.specs_from_json(text))
        shapes.update({ren[n]: s for n, s in sh.items()})
    return shapes, tuple(specs)


@given(trees(), st.data())
def test_spec_trees_apply_in_order_with_and_without_batching(tree_layout, d):
    shapes, tree = tree_layout
    params = d.draw(data(shapes, mixed=True))  # one dtype per parameter: batching must not promote
    ks = tuple(d.draw(st.integers(0, s.numblk_per_scope())) for s in tree)
    snap = snapshot(params)
    out = skf.hard_threshold(params, tree, nnz=ks)
    assert {k: v.dtype for k, v in out.items()} == {k: v.dtype for k, v in params.items()}
    seq = params
    for s, k in zip(tree, ks):
        seq = skf.hard_threshold(seq, s, nnz=k)
    with batching(False):
        unbatched = skf.hard_threshold(params, tree, nnz=ks)
    for name in params:
        assert bitwise_equal(out[name], seq[name]) and bitwise_equal(unbatched[name], out[name]), name
    m = skf.masks(params, tree, nnz=ks)
    applied = skf.apply_masks(params, m)
    for name in params:
        assert bitwise_equal(applied[name], out[name]), name
    # each spec's block masks are computed on the earlier specs' output, so expanding and ANDing
    # them gives the tree's element masks exactly
    expanded = skf.expand_block_masks(tree, skf.block_masks(params, tree, nnz=ks))
    assert expanded.keys() == m.keys()
    for name in m:
        assert torch.equal(expanded[name], m[name]), name
    assert_unchanged(params, snap)


# --------------------------------------------------------------------------
# 5. selection primitives on long rows (both algorithms, chunked ties)
# --------------------------------------------------------------------------


@given(st.integers(1, 3), st.sampled_from([1, 5, 32, 33, 64, 65, 200, 4500, 16500]), st.sampled_from(DTYPES),
       st.booleans(), st.booleans(), st.data())
def test_topk_and_kth_largest_match_sorting(rows, n, dtype, ties, specials, d):
    x = make_tensor((rows, n), dtype, d.draw(st.integers(0, 2**31 - 1)), ties, specials)
    k = d.draw(st.integers(0, n))
    snap = x.clone()
    keep = skf.topk_mask(x, k)
    assert keep.sum(-1).tolist() == [k] * rows
    for r in range(rows):
        idx = ref.topk_row(x[r].tolist(), k)
        assert keep[r].nonzero().flatten().tolist() == sorted(idx)
    if k >= 1:
        kth = skf.kth_largest(x, k)
        for r in range(rows):
            srt = sorted(x[r].tolist(), key=ref.rank_key, reverse=True)
            v = srt[k - 1]
            got = float(kth[r])
            assert (math.isnan(v) and math.isnan(got)) or got == v
    assert bitwise_equal(x, snap)


# --------------------------------------------------------------------------
# 6. dtypes: half precision accumulates in float32
# --------------------------------------------------------------------------

#: Documented tolerance (README, "Numerics"): half-precision scores are computed in float32 from the
#: exactly upcast values, so they equal the float32 computation on ``x.float()`` bitwise; against
#: float32 data *before* the cast they differ by the cast's relative rounding only.
HALF_RTOL = {torch.float16: 2.0 ** -11, torch.bfloat16: 2.0 ** -8}


@given(layouts("scope", specials=False), st.sampled_from(HALF), st.sampled_from((1, 2, math.inf)))
def test_half_precision_computes_in_float32_from_the_cast_values(layout, dtype, p):
    params, scope = layout
    full = {k: v.to(torch.float32) for k, v in params.items()}
    half = {k: v.to(dtype) for k, v in full.items()}
    got = skf.scope_scores(half, scope, p=p)
    assert got.dtype == torch.float32
    up = skf.scope_scores({k: v.float() for k, v in half.items()}, scope, p=p)
    assert bitwise_equal(got, up), "half scores differ from float32 scores of the upcast values"
    exp = skf.scope_scores(full, scope, p=p)
    torch.testing.assert_close(got, exp, rtol=HALF_RTOL[dtype] * 1.01 + 1e-6, atol=1e-6)
    up = {k_: v.float() for k_, v in half.items()}
    k = scope.numblk_per_scope() // 2
    assert torch.equal(skf.block_masks(half, scope, nnz=k, p=p), skf.block_masks(up, scope, nnz=k, p=p))
    ht, ht_up = skf.hard_threshold(half, scope, nnz=k, p=p), skf.hard_threshold(up, scope, nnz=k, p=p)
    assert all(bitwise_equal(ht[n], ht_up[n].to(dtype)) for n in half)
    # the prox computes in float32 from the exactly upcast values and rounds once to the param dtype
    cond = {k_: (v.abs() + 0.5).to(dtype) for k_, v in full.items()}
    for c in (None, cond):
        pr = skf.soft_threshold(half, scope, 0.3, conditioners=c)
        pr_up = skf.soft_threshold(up, scope, 0.3, conditioners=None if c is None else {n: v.float() for n, v in c.items()})
        assert all(bitwise_equal(pr[n], pr_up[n].to(dtype)) for n in half), "half prox != float32 prox rounded"


# --------------------------------------------------------------------------
# 7. the explicit checker agrees with the data
# --------------------------------------------------------------------------


@given(layouts("scope"))
def test_check_finite_raises_iff_a_covered_element_is_not_finite(layout):
    params, scope = layout
    snap = snapshot(params)
    covered = {}
    for v in scope.views():
        pos = ref.view_positions(v).reshape(-1)
        flat = covered.setdefault(v.param, torch.zeros(math.prod(v.param_shape), dtype=torch.bool))
        flat[pos] = True
    bad = {k: (~torch.isfinite(params[k].reshape(-1))) & c for k, c in covered.items()}
    first_bad = next((k for k in sorted(bad) if bad[k].any()), None)
    if first_bad is None:
        skf.check_finite(params, scope)
    else:
        try:
            skf.check_finite(params, scope)
        except skf.NonFiniteError as e:
            msg = str(e)
            name = next(k for k in bad if f"params[{k!r}]" in msg)
            assert bad[name].any()
            first = int(bad[name].nonzero()[0, 0])
            idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(first), params[name].shape))
            assert f"first at index {idx}" in msg and f"{int(bad[name].sum())} non-finite" in msg, msg
        else:
            raise AssertionError("check_finite did not raise")
    assert_unchanged(params, snap)


# --------------------------------------------------------------------------
# 8. the prox: loop reference, optimality conditions, NaN/Inf pass-through
# --------------------------------------------------------------------------

_EPS = {torch.float16: 2.0 ** -10, torch.bfloat16: 2.0 ** -7, torch.float32: 2.0 ** -23, torch.float64: 2.0 ** -52}


@st.composite
def prox_case(draw, specials=False):
    params, spec = draw(layouts(draw(st.sampled_from(["scope", "block"])), specials=specials))
    dtype = params["untouched"].dtype
    grid = tuple(spec.grid_shape)
    how = draw(st.sampled_from(["number", "tensor0", "grid"]))
    if how == "number":
        t = draw(st.floats(0, 4))
    elif how == "tensor0":
        t = torch.tensor(draw(st.floats(0, 4)))
    else:
        t = torch.rand(grid, generator=torch.Generator().manual_seed(draw(st.integers(0, 2**31)))) * 4
    cond = None
    if draw(st.booleans()):  # positive diagonal metric, spread like Adam's sqrt(v_hat) + eps
        g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
        cond = {k: torch.exp(torch.randn(v.shape, generator=g, dtype=torch.float64)).to(dtype)
                for k, v in params.items() if k != "untouched"}
    return params, spec, t, cond, draw(st.booleans())


def _blocks(spec, t, scale):
    for block, cidx, tb in ref._block_items(spec, t):
        yield block, cidx, tb * (math.sqrt(block.numel_per_block()) if scale else 1.0)


@given(prox_case())
def test_prox_matches_loop_and_satisfies_optimality(case):
    params, spec, t, cond, scale = case
    dtype = params["untouched"].dtype
    snap = snapshot(params)
    csnap = snapshot(cond) if cond is not None else None
    out = skf.soft_threshold(params, spec, t, conditioners=cond, scale=scale)
    assert out.keys() == params.keys() and out["untouched"] is params["untouched"]
    assert all(out[k].dtype == params[k].dtype and out[k].shape == params[k].shape for k in params)
    exp = ref.soft_threshold(params, spec, t, cond, scale)
    eps = _EPS[dtype]
    for k in exp:
        if k == "untouched":
            continue
        scale_k = float(params[k].double().abs().max()) + 1.0
        torch.testing.assert_close(out[k].double(), exp[k], rtol=64 * eps, atol=64 * eps * scale_k)
    if dtype in (torch.float32, torch.float64):  # optimality (KKT) of every block, in float64
        outd = {k: v.double() for k, v in out.items()}
        for block, cidx, tb in _blocks(spec, t, scale):
            v = ref.block_elements(params, block, cidx).double()
            x = ref.block_elements(outd, block, cidx)
            h = torch.ones_like(v) if cond is None else ref.block_elements(cond, block, cidx).double()
            tol = 64 * eps * (tb + float((h * v).norm()) + 1.0)
            if bool((x == 0).all()):
                assert float((h * v).norm()) <= tb + tol, "a zeroed block must have ||h v|| <= t"
            else:
                r = h * (v - x) - tb * x / x.norm()  # 0 in the subdifferential
                assert float(r.norm()) <= tol, f"KKT residual {float(r.norm())} > {tol}"
    assert_unchanged(params, snap)
    if cond is not None:
        assert_unchanged(cond, csnap)


@given(prox_case(specials=True))
def test_prox_passes_non_finite_blocks_through_unchanged(case):
    params, spec, t, cond, scale = case
    out = skf.soft_threshold(params, spec, t, conditioners=cond, scale=scale)
    for block, cidx, tb in _blocks(spec, t, scale):
        v = ref.block_elements(params, block, cidx)
        x = ref.block_elements(out, block, cidx)
        if not bool(torch.isfinite(v).all()):
            assert bitwise_equal(x, v), "a block holding NaN/Inf must pass through the prox unchanged"
        else:
            h = None if cond is None else ref.block_elements(cond, block, cidx)
            e, _ = ref.prox_block(v, tb, h)
            eps = _EPS[params["untouched"].dtype]
            torch.testing.assert_close(x.double(), e, rtol=64 * eps, atol=64 * eps * (float(v.double().abs().max()) + 1))
