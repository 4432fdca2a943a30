"""SpecBuilder: persistent fluent building by name, and every error."""

import pytest
import torch
from torch import nn

import sparsekit_fx as skf
from sparsekit_fx import BuilderError, DuplicateNameError, SpecBuilder, UnknownNameError, View


def mlp():
    m = nn.Module()
    m.fc1, m.fc2 = nn.Linear(8, 16), nn.Linear(16, 8)
    return m


def channels(b):
    return (b.add_block("fc1", "fc1.weight", (1, -1))
             .add_block("fc2", "fc2.weight", (-1, 1))
             .couple_blocks("ch", ["fc1", "fc2"], orders=[(0, 1), (1, 0)]))


def test_builds_the_same_specs_as_direct_construction():
    tree = channels(SpecBuilder(mlp())).add_scope("channels", "ch", ()).build()
    fc1 = skf.BlockSpec(View("fc1.weight", (16, 8)), (1, -1))
    fc2 = skf.BlockSpec(View("fc2.weight", (8, 16)), (-1, 1))
    assert tree == (skf.ScopeSpec(skf.BlockCoupling((fc1, fc2), ((0, 1), (1, 0))), ()),)
    assert tree[0].name == "channels" and tree[0].block.name == "ch"


def test_couple_scopes_shares_one_budget_and_consumes_members():
    b = (SpecBuilder({"u": torch.zeros(4, 8), "v": (8, 4)})
         .add_block("U", "u", (1, 1)).add_block("V", View("v", (8, 4)), (1, 1))
         .add_scope("gU", "U", (1, 4)).add_scope("gV", "V", (4, 1))
         .couple_scopes("UV", ["gU", "gV"], orders=[(0, 1), (1, 0)]))
    tree = b.build()
    assert len(tree) == 1 and isinstance(tree[0], skf.ScopeCoupling)
    assert tree[0].numblk_per_scope() == 8
    assert b.get("gU").shape == (1, 4) and b.names() == ("U", "V", "gU", "gV", "UV")


def test_builder_is_persistent():
    base = channels(SpecBuilder(mlp()))
    a = base.add_scope("all", "ch", ())
    c = base.add_scope("fours", "ch", (4,))
    assert "all" not in base and "fours" not in a
    assert a.build()[0].numblk_per_scope() == 16 and c.build()[0].numblk_per_scope() == 4


def test_several_top_level_scopes_in_insertion_order():
    b = (SpecBuilder(mlp()).add_block("a", "fc1.weight", (1, 1)).add_scope("sa", "a", (1, 4))
         .add_block("b", "fc2.weight", (1, 1)).add_scope("sb", "b", (1, 4)))
    assert [s.name for s in b.build()] == ["sa", "sb"]


def test_duplicate_name():
    b = SpecBuilder(mlp()).add_block("fc1", "fc1.weight", (1, 1))
    with pytest.raises(DuplicateNameError, match="'fc1', already a BlockSpec"):
        b.add_block("fc1", "fc2.weight", (1, 1))
    with pytest.raises(DuplicateNameError):
        b.add_scope("fc1", "fc1", ())


def test_duplicate_member():
    b = SpecBuilder(mlp()).add_block("a", "fc1.weight", (1, -1))
    with pytest.raises(DuplicateNameError, match="each name once"):
        b.couple_blocks("c", ["a", "a"])


def test_unknown_names():
    b = SpecBuilder(mlp()).add_block("fc1", "fc1.weight", (1, 1))
    with pytest.raises(UnknownNameError, match=r"'nope'; known: \['fc1'\]"):
        b.add_scope("s", "nope", ())
    with pytest.raises(UnknownNameError):
        b.couple_blocks("c", ["fc1", "fc3"])
    with pytest.raises(UnknownNameError):
        b.couple_scopes("c", ["x"])
    with pytest.raises(UnknownNameError):
        b.get("x")
    assert isinstance(UnknownNameError("x"), LookupError)


def test_unknown_parameter_name():
    with pytest.raises(skf.ParamError, match="'fc3.weight'"):
        SpecBuilder(mlp()).add_block("b", "fc3.weight", (1, 1))
    with pytest.raises(skf.ParamError, match="no params given"):
        SpecBuilder().add_block("b", "fc1.weight", (1, 1))


def test_wrong_kinds():
    b = SpecBuilder(mlp()).add_block("a", "fc1.weight", (1, 1)).add_scope("s", "a", (1, 4))
    with pytest.raises(BuilderError, match="a ScopeSpec"):
        b.couple_blocks("c", ["s"])
    b2 = SpecBuilder(mlp()).add_block("a", "fc1.weight", (1, 1))
    with pytest.raises(BuilderError, match="'a', a BlockSpec"):
        b2.couple_scopes("c", ["a"])
    with pytest.raises(BuilderError, match="use View.of"):
        b2.add_block("t", torch.zeros(2, 2), (1, 1))
    with pytest.raises(BuilderError, match="non-empty list"):
        b2.couple_blocks("c", "a")


def test_each_spec_is_used_once():
    b = channels(SpecBuilder(mlp()))
    with pytest.raises(BuilderError, match="'fc1', already used by 'ch'"):
        b.add_scope("s", "fc1", ())


def test_build_refuses_loose_blocks_and_empty():
    with pytest.raises(BuilderError, match=r"\['ch'\] in none"):
        channels(SpecBuilder(mlp())).build()
    with pytest.raises(BuilderError, match="empty builder"):
        SpecBuilder().build()


def test_spec_errors_pass_through():
    with pytest.raises(skf.ShapeMismatchError):
        SpecBuilder(mlp()).add_block("a", "fc1.weight", (1, 3))
    with pytest.raises(skf.CouplingError):
        (SpecBuilder(mlp()).add_block("a", "fc1.weight", (1, -1)).add_block("b", "fc2.weight", (-1, 1))
         .couple_blocks("c", ["a", "b"]))  # grids (16, 1) and (1, 16) need orders
