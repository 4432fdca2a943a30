"""Specs: normalisation, derived facts, equality, pytree behaviour and every validation rule."""

import math
import pickle

import pytest
import torch
from torch.utils import _pytree as pytree

import sparsekit_fx as skf
from sparsekit_fx import BlockCoupling, BlockSpec, ScopeCoupling, ScopeSpec, View


def test_view_defaults_to_whole_parameter():
    v = View("w", (4, 6))
    assert v.shape == (4, 6) and v.stride == (6, 1) and v.offset == 0
    assert v.is_whole and v.numel() == 24 and v.params() == ("w",)
    assert View.of("w", torch.zeros(4, 6)) == v


def test_view_shape_without_stride_is_a_reshape():
    v = View("w", (4, 6), shape=(8, 3))
    assert v.stride == (3, 1) and v.geometry.dense and not v.is_whole


def test_blockspec_normalises_minus_one_and_empty():
    v = View("w", (8, 12))
    assert BlockSpec(v, ()).shape == (1, 1)
    b = BlockSpec(v, (-1, 4))
    assert b.shape == (8, 4) and b.grid_shape == (1, 3)
    assert b.numblk() == 3 and b.numel_per_block() == 32 and b.numel() == 96


def test_scopespec_missing_trailing_dims_mean_whole_dim():
    b = BlockSpec(View("w", (8, 12)), (1, 1))
    s = ScopeSpec(b, (2,))
    assert s.shape == (2, 12) and s.grid_shape == (4, 1)
    assert s.numblk_per_scope() == 24 and s.numel_per_scope() == 24
    assert ScopeSpec(b, ()).shape == (8, 12)
    assert ScopeSpec(b, (1, -1)).grid_shape == (8, 1)


def test_scope_numel_counts_elements_not_blocks():
    s = ScopeSpec(BlockSpec(View("w", (8, 12)), (2, 2)), (1, 3))
    assert s.numblk_per_scope() == 3 and s.numel_per_scope() == 12
    assert s.numscp() == 4 * 2 and s.numblk() == 24 and s.numel() == 96


def test_coupling_grid_and_counts():
    b1 = BlockSpec(View("fc1", (6, 4)), (1, -1))
    b2 = BlockSpec(View("fc2", (4, 6)), (-1, 1))
    c = BlockCoupling((b1, b2), orders=((0, 1), (1, 0)))
    assert c.grid_shape == (6, 1) and c.numel_per_block() == 8 and c.numblk() == 6
    assert c.params() == ("fc1", "fc2")


def test_scope_coupling_shares_budget_counts():
    s1 = ScopeSpec(BlockSpec(View("a", (4, 8)), (1, 2)), (1, -1))
    s2 = ScopeSpec(BlockSpec(View("b", (8, 4)), (2, 1)), (-1, 1))
    sc = ScopeCoupling((s1, s2), orders=((0, 1), (1, 0)))
    assert sc.grid_shape == (4, 1)
    assert sc.numblk_per_scope() == 4 + 4
    assert sc.numel_per_scope() == 8 + 8
    assert sc.params() == ("a", "b")


def test_equality_ignores_name_and_hash_agrees():
    v = View("w", (4, 8))
    a = ScopeSpec(BlockSpec(v, (1, 4), name="x"), (1, 2), name="s1")
    b = ScopeSpec(BlockSpec(View("w", (4, 8)), (1, 4), name="y"), (1, 2), name="s2")
    assert a == b and hash(a) == hash(b)
    assert a != ScopeSpec(BlockSpec(View("w2", (4, 8)), (1, 4)), (1, 2))
    assert len({a, b}) == 1


def test_specs_are_frozen():
    b = BlockSpec(View("w", (4, 8)), (1, 4))
    with pytest.raises(Exception):
        b.shape = (1, 2)


def test_specs_are_pytree_nodes_without_leaves():
    s = ScopeSpec(BlockSpec(View("w", (4, 8)), (1, 4)), (1, 2))
    leaves, treedef = pytree.tree_flatten({"spec": s, "x": torch.ones(1)})
    assert len(leaves) == 1
    rebuilt = pytree.tree_unflatten(leaves, treedef)
    assert rebuilt["spec"] == s
    assert pytree.tree_flatten(s)[0] == []


def test_specs_hold_no_tensors_and_pickle():
    s = ScopeCoupling(
        (ScopeSpec(BlockSpec(View("a", (4, 8)), (1, 2)), (1, -1)),
         ScopeSpec(BlockSpec(View("b", (4, 8)), (1, 2)), (1, -1)))
    )
    assert pickle.loads(pickle.dumps(s)) == s

    def walk(o):
        if isinstance(o, torch.Tensor):
            raise AssertionError("tensor in spec")
        if hasattr(o, "__dataclass_fields__"):
            for f in o.__dataclass_fields__:
                walk(getattr(o, f))
        elif isinstance(o, (tuple, list)):
            for x in o:
                walk(x)

    walk(s)


def test_views_and_params_in_canonical_order():
    va, vb = View("a", (4, 4)), View("b", (4, 4))
    c = BlockCoupling((BlockSpec(va, (1, 1)), BlockSpec(vb, (1, 1))))
    assert ScopeSpec(c, (1, 4)).views() == (va, vb)


def test_two_disjoint_views_of_one_param_may_couple():
    qkv = (12, 4)
    views = [View("qkv", qkv, (4, 4), (4, 1), off) for off in (0, 16, 32)]
    c = BlockCoupling(tuple(BlockSpec(v, (1, -1)) for v in views))
    assert c.params() == ("qkv",) and c.grid_shape == (4, 1)


# --------------------------------------------------------------------------
# validation catalogue: every rule raises a SparseKitError subclass whose
# message names the argument, what was expected, what was got and the fix.
# --------------------------------------------------------------------------

def _check(exc_type, fn, arg):
    with pytest.raises(exc_type) as e:
        fn()
    msg = str(e.value)
    assert isinstance(e.value, skf.SparseKitError)
    assert f"'{arg}'" in msg and "expected" in msg and "got" in msg and "Fix:" in msg, msg


V = View("w", (8, 12))
B = BlockSpec(V, (1, 4))


@pytest.mark.parametrize(
    "exc, fn, arg",
    [
        (skf.SpecError, lambda: View("", (4,)), "param"),
        (skf.SpecError, lambda: View("w", (0, 4)), "param_shape"),
        (skf.SpecError, lambda: View("w", (4, 4), (2, 2), (4,)), "stride"),
        (skf.SpecError, lambda: View("w", (4, 4), (2, 2), (4, 1), -1), "offset"),
        (skf.SpecError, lambda: View("w", (4, 4), (4, 4), (4, 1), 1), "shape/stride/offset"),
        (skf.SpecError, lambda: View("w", (4, 4), (2, 4), (1, 1)), "stride"),  # overlaps itself
        (skf.SpecError, lambda: View("w", (4, 4), (2, 2), (0, 1)), "stride"),  # zero stride
        (skf.SpecError, lambda: View("w", (4, 4), ("a", 2)), "shape"),
        (skf.SpecError, lambda: BlockSpec("w", (1, 1)), "view"),
        (skf.ShapeMismatchError, lambda: BlockSpec(V, (1, 4, 1)), "shape"),
        (skf.ShapeMismatchError, lambda: BlockSpec(V, (3, 4)), "shape"),
        (skf.SpecError, lambda: BlockSpec(V, (0, 4)), "shape"),
        (skf.SpecError, lambda: BlockSpec(V, (-2, 4)), "shape"),
        # partial edge blocks: pad must be a bool; without it, blocks must divide the view
        (skf.SpecError, lambda: BlockSpec(V, (3, 4), pad="yes"), "pad"),
        (skf.SpecError, lambda: BlockSpec(V, (3, 4), pad=1), "pad"),
        (skf.ShapeMismatchError, lambda: BlockSpec(V, (3, 5)), "shape"),
        (skf.ShapeMismatchError, lambda: BlockSpec(V, (3, 4, 1), pad=True), "shape"),
        (skf.SpecError, lambda: BlockSpec(V, (0, 4), pad=True), "shape"),
        # scopes divide the (ceil) grid of a padded spec exactly
        (skf.ShapeMismatchError, lambda: ScopeSpec(BlockSpec(V, (3, 5), pad=True), (2, 1)), "shape"),
        # couplings align padded grids like any other
        (skf.CouplingError,
         lambda: BlockCoupling((BlockSpec(V, (3, 5), pad=True), BlockSpec(View("u", (8, 12)), (2, 5), pad=True))),
         "orders[1]"),
        (skf.SpecError, lambda: ScopeSpec(V, (1,)), "block"),
        (skf.ShapeMismatchError, lambda: ScopeSpec(B, (1, 1, 1)), "shape"),
        (skf.ShapeMismatchError, lambda: ScopeSpec(B, (3, 1)), "shape"),
        (skf.CouplingError, lambda: BlockCoupling(()), "specs"),
        (skf.CouplingError, lambda: BlockCoupling((B, "x")), "specs[1]"),
        (skf.CouplingError, lambda: BlockCoupling((B, BlockSpec(View("u", (8, 12)), (1, 4))), orders=((0, 1),)), "orders"),
        (skf.CouplingError, lambda: BlockCoupling((B, BlockSpec(View("u", (8, 12)), (1, 4))), orders=((0, 1), (0, 0))), "orders[1]"),
        (skf.CouplingError, lambda: BlockCoupling((B, BlockSpec(View("u", (8, 12)), (1, 4))), orders=((0, 1), (1, 0))), "orders[1]"),
        (skf.CouplingError, lambda: BlockCoupling((B, B)), "views"),
        (skf.ShapeMismatchError, lambda: BlockCoupling((B, BlockSpec(View("w", (4, 24)), (1, 8)))), "param_shape"),
        (skf.CouplingError, lambda: ScopeCoupling(()), "scopes"),
        (skf.CouplingError, lambda: ScopeCoupling((ScopeSpec(B, (1, 3)), B)), "scopes[1]"),
        (skf.CouplingError,
         lambda: ScopeCoupling((ScopeSpec(B, (1, 3)), ScopeSpec(BlockSpec(View("u", (8, 12)), (1, 4)), (2, 3)))), "orders[1]"),
        (skf.CouplingError, lambda: ScopeCoupling((ScopeSpec(B, (1, 3)), ScopeSpec(B, (1, 3)))), "views"),
    ],
)
def test_validation_catalogue(exc, fn, arg):
    _check(exc, fn, arg)


def test_overlapping_strided_views_are_detected_exactly():
    even = View("w", (4, 8), (4, 4), (8, 2), 0)
    odd = View("w", (4, 8), (4, 4), (8, 2), 1)
    BlockCoupling((BlockSpec(even, (1, 1)), BlockSpec(odd, (1, 1))))  # disjoint: fine
    half = View("w", (4, 8), (4, 2), (8, 1), 2)  # columns 2,3 overlap even col 2
    with pytest.raises(skf.CouplingError):
        BlockCoupling((BlockSpec(even, (1, 1)), BlockSpec(half, (1, 2))))


def test_failed_construction_leaves_inputs_alone():
    shape = [8, 12]
    with pytest.raises(skf.SparseKitError):
        View("w", shape, (10, 12))
    assert shape == [8, 12]
    assert math.prod(shape) == 96


def test_non_dividing_block_message_points_to_pad():
    with pytest.raises(skf.ShapeMismatchError) as e:
        BlockSpec(V, (3, 5))
    assert "pad=True" in str(e.value)


def test_padded_specs_pickle_and_stay_leafless():
    b = BlockSpec(View("w", (7, 9)), (2, 4), pad=True)
    s = ScopeSpec(b, ())
    assert pickle.loads(pickle.dumps(s)) == s and pickle.loads(pickle.dumps(b)).padding == (1, 3)
    assert pytree.tree_flatten(s)[0] == []
