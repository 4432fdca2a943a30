"""Spec trees through JSON, masks through torch.save, and the spec-tree helpers."""

import io
import json

import pytest
import torch

import sparsekit_fx as skf
from sparsekit_fx import BlockCoupling, BlockSpec, FormatError, ScopeCoupling, ScopeSpec, View


def tree():
    fc1 = BlockSpec(View("fc1.weight", (16, 8)), (1, -1), name="fc1")
    fc2 = BlockSpec(View("fc2.weight", (8, 16)), (-1, 1), name="fc2")
    ch = ScopeSpec(BlockCoupling((fc1, fc2), ((0, 1), (1, 0)), name="ch"), (4,), name="channels")
    strided = ScopeSpec(BlockSpec(View("w", (2, 32), (2, 2, 8, 2), (32, 16, 1, 8)), (1, 1, 1, 2)), (1, 1, 4, 1))
    u = ScopeSpec(BlockSpec(View("u", (4, 8)), (1, 1)), (1, 4))
    v = ScopeSpec(BlockSpec(View("v", (8, 4), offset=0), (1, 1)), (4, 1))
    gaps = ScopeSpec(BlockSpec(View("g", (4, 8), (4, 4), (8, 2), 1), (1, 1)), (1, 4))
    return (ch, strided, ScopeCoupling((u, v), ((0, 1), (1, 0)), name="uv"), gaps)


def params(t):
    shapes = {v.param: v.param_shape for s in t for v in s.views()}
    return {k: torch.randn(s) for k, s in shapes.items()}


def test_json_round_trip_keeps_layout_and_names(tmp_path):
    t = tree()
    back = skf.specs_from_json(skf.specs_to_json(t))
    assert back == t
    assert [s.name for s in back] == [s.name for s in t] and back[0].block.specs[1].name == "fc2"
    skf.save_specs(t, tmp_path / "t.json")
    assert skf.load_specs(tmp_path / "t.json") == t
    doc = json.loads((tmp_path / "t.json").read_text())
    assert doc["format"] == "sparsekit_fx.specs" and doc["version"] == 1


def test_any_tree_shape_round_trips():
    a, b, c, d = tree()
    for t in (a, [a, b], {"x": (a, b), "y": [c, {"z": d}]}):
        back = skf.specs_from_json(skf.specs_to_json(t))
        assert back == t and type(back) is type(t)
    with pytest.raises(FormatError, match="str"):
        skf.specs_to_json({1: a})
    with pytest.raises(skf.SpecError):
        skf.specs_to_json(("nope",))


def _doc(**change):
    doc = json.loads(skf.specs_to_json(tree()))
    doc.update(change)
    return json.dumps(doc)


@pytest.mark.parametrize("text, match", [
    ("not json", "invalid JSON"),
    ("[1, 2]", "format"),
    (json.dumps({"format": "other", "version": 1, "tree": []}), "not written by sparsekit_fx"),
    (_doc(version=0), "re-create the specs"),
    (_doc(version=99), "newer sparsekit_fx"),
    (_doc(version="1"), "version"),
    (_doc(tree={"type": "tuple", "items": []}), "non-empty spec tree"),
    (_doc(tree={"type": "tuple", "items": 3}), "a list"),
    (_doc(tree={"type": "tuple", "items": [{"type": "Mystery"}]}), "tree\\[0\\].type"),
    (_doc(tree={"type": "ScopeSpec", "shape": [1]}), "key 'block'"),
    (_doc(tree={"type": "View", "param": "w", "param_shape": [4], "shape": ["a"], "stride": [1], "offset": 0}),
     "list of ints"),
    (_doc(tree={"type": "View", "param": "w", "param_shape": [4], "shape": [8], "stride": [1], "offset": 0}),
     "invalid layout"),
    (json.dumps({"format": "sparsekit_fx.specs", "version": 1}), "no 'tree' entry"),
])
def test_bad_or_old_json(text, match):
    with pytest.raises(FormatError, match=match):
        skf.specs_from_json(text)


def test_bits_pack_and_unpack():
    for n in (1, 7, 8, 9, 100):
        m = torch.rand(n) > 0.5
        packed = skf.pack_bits(m)
        assert packed.dtype == torch.uint8 and packed.numel() == (n + 7) // 8
        assert torch.equal(skf.unpack_bits(packed, (n,)), m)
    with pytest.raises(skf.ShapeMismatchError):
        skf.unpack_bits(torch.zeros(2, dtype=torch.uint8), (100,))


def test_masks_round_trip_through_torch_save_compactly():
    t = tree()
    p = params(t)
    keeps = skf.block_masks(p, t, nnz=(2, 2, 4, 2))
    sd = skf.masks_to_state_dict(t, keeps)
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    t2, k2 = skf.masks_from_state_dict(torch.load(buf, weights_only=True))
    assert t2 == t and all(torch.equal(a, b) for a, b in zip(keeps, k2))
    expected = skf.masks(p, t, nnz=(2, 2, 4, 2))
    got = skf.expand_block_masks(t2, k2)
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in got)
    # one bit per block: the channel spec's 16 blocks take 2 bytes
    assert sd["blocks.0"].numel() == 2 and sd["blocks.0"].dtype == torch.uint8


def test_block_spec_masks_round_trip():
    b = BlockSpec(View("w", (4, 8)), (1, 2))
    p = {"w": torch.randn(4, 8)}
    for keep in (skf.block_masks(p, b, nnz=5), skf.block_masks(p, b, thresholds=0.5)):
        t, k = skf.masks_from_state_dict(skf.masks_to_state_dict(b, keep))
        assert t == b and isinstance(k, torch.Tensor)
        assert torch.equal(skf.expand_block_masks(b, k)["w"], skf.expand_block_masks(b, keep)["w"])


@pytest.mark.parametrize("mutate, match", [
    (lambda sd: sd.update(format="x"), "format"),
    (lambda sd: sd.update(version=2), "newer"),
    (lambda sd: sd.pop("blocks.1"), "blocks.1"),
    (lambda sd: sd.update({"blocks.0": torch.zeros(5, dtype=torch.uint8)}), "does not match"),
    (lambda sd: sd.update(specs="{}"), "format"),
])
def test_bad_mask_state_dicts(mutate, match):
    t = tree()
    sd = skf.masks_to_state_dict(t, skf.block_masks(params(t), t, sparsity=0.5))
    mutate(sd)
    with pytest.raises(FormatError, match=match):
        skf.masks_from_state_dict(sd)


def test_mask_state_dict_checks_shapes():
    t = tree()
    with pytest.raises(skf.ArgumentError, match="one per spec"):
        skf.masks_to_state_dict(t, skf.block_masks(params(t), t, sparsity=0.5)[:2])
    with pytest.raises(skf.ShapeMismatchError):
        skf.masks_to_state_dict(t[0], torch.ones(3, dtype=torch.bool))


def test_merge_masks_is_an_and():
    a = {"w": torch.tensor([True, True, False]), "x": torch.tensor([True])}
    b = {"w": torch.tensor([True, False, True])}
    assert skf.merge_masks(a, b)["w"].tolist() == [True, False, False]
    assert skf.merge_masks(a, b)["x"].tolist() == [True]
    with pytest.raises(skf.ShapeMismatchError):
        skf.merge_masks(a, {"w": torch.ones(2, dtype=torch.bool)})


# --------------------------------------------------------------------------
# property: random layouts round-trip through JSON and through packed masks
# --------------------------------------------------------------------------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def layouts(draw):
    divs = lambda n: [d for d in range(1, n + 1) if n % d == 0]  # noqa: E731
    m, k = draw(st.sampled_from([2, 4, 6, 8])), draw(st.sampled_from([4, 8, 12]))
    bm, bk = draw(st.sampled_from(divs(m))), draw(st.sampled_from(divs(k)))
    gm, gk = m // bm, k // bk
    sm, sk = draw(st.sampled_from(divs(gm))), draw(st.sampled_from(divs(gk)))
    a = ScopeSpec(BlockSpec(View("a", (m, k)), (bm, bk)), (sm, sk), name=draw(st.sampled_from([None, "s"])))
    b = BlockSpec(View("b", (k, m)), (bk, bm))
    c = ScopeSpec(BlockCoupling((BlockSpec(View("c", (m, k)), (bm, bk)), b), ((0, 1), (1, 0))), (sm, sk))
    return (a, c), draw(st.integers(0, 2**31 - 1))


@given(layouts())
def test_random_layouts_round_trip(case):
    t, seed = case
    assert skf.specs_from_json(skf.specs_to_json(t)) == t
    g = torch.Generator().manual_seed(seed)
    p = {n: torch.randn(sh, generator=g) for n, sh in (("a", t[0].views()[0].param_shape),
                                                         ("c", t[1].views()[0].param_shape),
                                                         ("b", t[1].views()[1].param_shape))}
    keeps = skf.block_masks(p, t, sparsity=0.5)
    t2, k2 = skf.masks_from_state_dict(skf.masks_to_state_dict(t, keeps))
    got, want = skf.expand_block_masks(t2, k2), skf.masks(p, t, sparsity=0.5)
    assert all(torch.equal(got[n], want[n]) for n in want)
