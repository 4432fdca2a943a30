"""Partial edge blocks (BlockSpec(..., pad=True)) through layout, stats and ops, against loops."""

import math

import pytest
import torch
import torch.nn.functional as F

import sparsekit_fx as skf
from sparsekit_fx import BlockCoupling, BlockSpec, ScopeCoupling, ScopeSpec, View
from sparsekit_fx.layout import crop_trailing, expand_grid, from_blocks, pad_trailing, to_blocks

from . import reference as ref

# The loop references slice blocks with Python slices, which stop at the view's
# edge, so they define partial edge blocks independently of the library.


def test_grid_padding_and_counts():
    b = BlockSpec(View("w", (7, 9)), (2, 4), pad=True)
    assert b.pad and b.grid_shape == (4, 3) and b.padding == (1, 3) and b.padded_shape == (8, 12)
    assert b.block_counts() == ((2, 2, 2, 1), (4, 4, 1))
    assert b.numblk() == 12 and b.numel_per_block() == 8 and b.numel() == 63
    assert ScopeSpec(b, ()).numel() == 63 and ScopeSpec(b, (2,)).grid_shape == (2, 1)
    big = BlockSpec(View("w", (3, 5)), (4, 8), pad=True)  # one block larger than the view
    assert big.grid_shape == (1, 1) and big.padding == (1, 3)


def test_pad_is_normalised_when_blocks_divide():
    v = View("w", (8, 12))
    assert BlockSpec(v, (2, 4), pad=True) == BlockSpec(v, (2, 4))
    assert not BlockSpec(v, (2, 4), pad=True).pad
    assert hash(BlockSpec(v, (2, 4), pad=True)) == hash(BlockSpec(v, (2, 4)))
    assert BlockSpec(View("w", (7, 12)), (2, 4), pad=True) != BlockSpec(View("w", (8, 12)), (2, 4))


@pytest.mark.parametrize("shape, block", [((7, 9), (2, 4)), ((5,), (3,)), ((3, 5, 4), (2, 2, 3)), ((4, 6), (4, 4))])
def test_layout_round_trips_with_padding(shape, block):
    spec = BlockSpec(View("w", shape), block, pad=True)
    x = torch.randn(shape)
    b = to_blocks(x, spec.shape, spec.padding, value=math.nan)
    assert b.shape == spec.grid_shape + (spec.numel_per_block(),)
    assert int(torch.isnan(b).sum()) == spec.numblk() * spec.numel_per_block() - spec.numel()
    assert torch.equal(from_blocks(b, spec.shape, spec.padding), x)
    # leading batch dims are left alone
    xb = torch.randn((3,) + shape)
    assert torch.equal(from_blocks(to_blocks(xb, spec.shape, spec.padding), spec.shape, spec.padding), xb)
    g = torch.arange(spec.numblk()).reshape(spec.grid_shape)
    e = expand_grid(g, spec.shape, spec.padding)
    assert e.shape == shape
    for idx in ref.grid_iter(spec.grid_shape):
        assert (e[ref.block_slice(spec, idx)] == g[idx]).all()
    assert crop_trailing(pad_trailing(x, spec.padding, 1.0), shape) is not x
    assert torch.equal(crop_trailing(pad_trailing(x, spec.padding, 1.0), shape), x)


def padded_cases():
    a = View("a", (7, 9))
    yield "plain", {"a": torch.randn(7, 9)}, BlockSpec(a, (2, 4), pad=True)
    yield "rows", {"a": torch.randn(7, 9)}, BlockSpec(a, (3, -1), pad=True)
    yield "strided", {"w": torch.randn(6, 10)}, BlockSpec(View("w", (6, 10), (5, 5), (10, 2), 1), (2, 3), pad=True)
    yield "3d", {"c": torch.randn(3, 5, 4)}, BlockSpec(View("c", (3, 5, 4)), (2, 2, 3), pad=True)
    yield "coupled", {"a": torch.randn(7, 9), "b": torch.randn(9, 7)}, BlockCoupling(
        (BlockSpec(a, (2, -1), pad=True), BlockSpec(View("b", (9, 7)), (-1, 2), pad=True)), orders=((0, 1), (1, 0)))
    yield "mixed", {"a": torch.randn(7, 9), "b": torch.randn(4, 6)}, BlockCoupling(
        (BlockSpec(a, (2, 3), pad=True), BlockSpec(View("b", (4, 6)), (1, 2))))


CASES = list(padded_cases())
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("p", [1, 2, 0.5, math.inf, -math.inf, 0])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_norms_ignore_padding(case, p):
    _, params, block = case
    params = {k: v.double() + 0.1 * torch.sign(v.double()) for k, v in params.items()}  # no zeros
    if p == 0:
        params = {k: torch.where(v.abs() < 0.5, 0.0, v) for k, v in params.items()}
    got = skf.block_norms(params, block, p=p)
    torch.testing.assert_close(got, ref.block_reduce(params, block, lambda x: ref.lp(x, p)))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_min_max_mean_reduce_ignore_padding(case):
    _, params, block = case
    params = {k: v.double() for k, v in params.items()}
    torch.testing.assert_close(skf.block_min(params, block), ref.block_reduce(params, block, torch.min))
    torch.testing.assert_close(skf.block_max(params, block), ref.block_reduce(params, block, torch.max))
    torch.testing.assert_close(skf.block_mean(params, block), ref.block_reduce(params, block, torch.mean))
    got = skf.block_reduce(params, block, lambda b: torch.nansum(b ** 3, -1))
    torch.testing.assert_close(got, ref.block_reduce(params, block, lambda x: (x ** 3).sum()))
    got = skf.block_reduce(params, block, lambda b: b.abs().sum(-1), pad_value=0.0)
    torch.testing.assert_close(got, ref.block_reduce(params, block, lambda x: x.abs().sum()))


@pytest.mark.parametrize("case", CASES, ids=IDS)
@pytest.mark.parametrize("nnz", [0, 1, 3])
def test_masks_and_hard_threshold_crop_padding(case, nnz):
    _, params, block = case
    params = {k: torch.randint(-2, 3, v.shape).float() for k, v in params.items()}  # ties
    scope = ScopeSpec(block, ())
    keep = ref.keep_blocks(scope, ref.scope_scores(params, scope), nnz=nnz)
    assert torch.equal(skf.block_masks(params, scope, nnz=nnz), keep)
    m = skf.masks(params, scope, nnz=nnz)
    exp = ref.element_masks(params, scope, keep)
    for k in exp:
        assert m[k].shape == params[k].shape and torch.equal(m[k], exp[k]), k
    out = skf.hard_threshold(params, scope, nnz=nnz)
    exp_out = ref.hard_threshold(params, scope, keep)
    for k in exp_out:
        assert torch.equal(out[k], exp_out[k]), k


def test_scope_coupling_of_padded_specs():
    s1 = ScopeSpec(BlockSpec(View("a", (5, 7)), (1, 3), pad=True), (1, -1))
    s2 = ScopeSpec(BlockSpec(View("b", (5, 2)), (1, 1)), (1, -1))
    sc = ScopeCoupling((s1, s2))
    params = {"a": torch.randn(5, 7), "b": torch.randn(5, 2)}
    keep = ref.keep_blocks(sc, ref.scope_scores(params, sc), nnz=2)
    m = skf.masks(params, sc, nnz=2)
    exp = ref.element_masks(params, sc, keep)
    assert all(torch.equal(m[k], exp[k]) for k in exp)


def test_mean_matches_avg_pool2d_ceil_mode_bitwise():
    # The sum order is the pooling kernel's, so means are identical, not just close.
    x = torch.randn(37, 50) ** 2
    spec = BlockSpec(View("w", (37, 50)), (4, 8), pad=True)
    exp = F.avg_pool2d(x[None, None], (4, 8), (4, 8), ceil_mode=True)[0, 0]
    assert torch.equal(skf.block_mean({"w": x}, spec), exp)


def test_padded_ops_compile_vmap_and_grad():
    spec = ScopeSpec(BlockSpec(View("w", (5, 7)), (2, 3), pad=True), (1, -1))

    def f(w, nnz):
        p = {"w": w}
        return skf.hard_threshold(p, spec, nnz=nnz)["w"], skf.block_mean(p, spec), skf.block_min(p, spec)

    w = torch.randn(5, 7)
    eager = f(w, torch.tensor(2))
    cf = torch.compile(f, fullgraph=True, backend="aot_eager")
    for a, b in zip(cf(w, torch.tensor(2)), eager):
        assert torch.equal(a, b)
    ws = torch.randn(3, 5, 7)
    batched = torch.func.vmap(f, in_dims=(0, None))(ws, torch.tensor(2))
    for i in range(3):
        for a, b in zip(batched, f(ws[i], torch.tensor(2))):
            assert torch.equal(a[i], b)
    g = torch.func.grad(lambda w: f(w, torch.tensor(2))[0].sum())(w)
    assert torch.equal(g, skf.masks({"w": w}, spec, nnz=2)["w"].float())


def test_padded_specs_through_json_mask_files_and_layout_maps():
    from sparsekit_fx.viz import layout_maps

    b = BlockSpec(View("w", (5, 7)), (2, 3), pad=True)
    tree = {"padded": ScopeSpec(b, (1, -1)), "plain": ScopeSpec(BlockSpec(View("v", (4, 4)), (1, 2)), (1, 2))}
    back = skf.specs_from_json(skf.specs_to_json(tree))
    assert back == tree and back["padded"].block.pad and back["padded"].block.padding == (1, 2)
    assert '"pad"' not in skf.specs_to_json(tree["plain"])  # unpadded files are unchanged
    params = {"w": torch.randn(5, 7), "v": torch.randn(4, 4)}
    keep = skf.block_masks(params, tree, nnz={"padded": 1, "plain": 1})
    expanded = skf.expand_block_masks(tree, keep)
    assert torch.equal(expanded["w"], skf.masks(params, tree["padded"], nnz=1)["w"])
    t, k = skf.masks_from_state_dict(skf.masks_to_state_dict(tree, keep))
    assert t == tree and torch.equal(skf.expand_block_masks(t, k)["w"], expanded["w"])
    block_id, _ = layout_maps(tree["padded"])["w"]
    assert block_id.shape == (5, 7) and block_id[4, 6] == b.numblk() - 1 and block_id[:2, :3].eq(0).all()
