"""Spec trees: sequential semantics, batching equivalence, per-spec hyper-parameters."""

import pytest
import torch

import sparsekit_fx as skf
from sparsekit_fx import BlockCoupling, BlockSpec, ScopeSpec, View
from sparsekit_fx.engine import batching
from sparsekit_fx.tree import groups, levels, signature


def transformer_tree(layers=3, d=8, h=16, seed=0):
    """q/k/v/o + fc1/fc2 per layer: coupled channels, then 2:4 on every matrix."""
    g = torch.Generator().manual_seed(seed)
    params, specs = {}, []
    for l in range(layers):
        for n in "qkvo":
            params[f"{l}.{n}"] = torch.randn(d, d, generator=g)
        params[f"{l}.fc1"] = torch.randn(h, d, generator=g)
        params[f"{l}.fc2"] = torch.randn(d, h, generator=g)
    for l in range(layers):
        fc1 = BlockSpec(View(f"{l}.fc1", (h, d)), (1, -1))
        fc2 = BlockSpec(View(f"{l}.fc2", (d, h)), (-1, 1))
        specs.append(ScopeSpec(BlockCoupling((fc1, fc2), orders=((0, 1), (1, 0))), ()))
    for name, p in params.items():
        specs.append(ScopeSpec(BlockSpec(View.of(name, p), (1, 1)), (1, 4)))
    return params, tuple(specs)


def test_levels_and_groups():
    params, tree = transformer_tree(layers=2)
    lv = levels(tree)
    assert [len(x) for x in lv] == [2 + 8, 4]  # channels + qkvo, then fc1/fc2 2:4
    assert len(groups(tree, lv[0])) == 2  # one coupled-channel layout, one 8x8 2:4 layout
    assert signature(tree[2]) == signature(tree[3]) != signature(tree[0])


def test_tree_equals_sequential_application_with_and_without_batching():
    params, tree = transformer_tree()
    nnz = tuple([8] * 3 + [2] * 18)
    seq = dict(params)
    for s, k in zip(tree, nnz):
        seq = skf.hard_threshold(seq, s, nnz=k)
    for flag in (True, False):
        with batching(flag):
            out = skf.hard_threshold(params, tree, nnz=nnz)
            m = skf.masks(params, tree, nnz=nnz)
            bm = skf.block_masks(params, tree, nnz=nnz)
        for k in params:
            assert torch.equal(out[k], seq[k]), (flag, k)
        applied = skf.apply_masks(params, m)
        assert all(torch.equal(applied[k], out[k]) for k in params)
        assert isinstance(bm, tuple) and len(bm) == len(tree)
        assert all(bool((b.sum(-1) == k).all()) for b, k in zip(bm, nnz))


def test_shared_and_per_spec_hyper_parameters():
    params, tree = transformer_tree(layers=1)
    a = skf.hard_threshold(params, tree[1:], nnz=2)
    b = skf.hard_threshold(params, tree[1:], nnz=tuple([torch.tensor(2)] * 6))
    assert all(torch.equal(a[k], b[k]) for k in params)
    dict_tree = {"attn": tree[1:5], "mlp": tree[5:]}
    c = skf.hard_threshold(params, dict_tree, sparsity={"attn": (0.5,) * 4, "mlp": (0.5, 0.5)})
    assert all(torch.equal(a[k], c[k]) for k in params)
    with pytest.raises(skf.ArgumentError) as e:
        skf.hard_threshold(params, tree[1:], nnz=(2, 2))
    assert "'nnz'" in str(e.value)


def test_batched_specs_with_different_per_spec_nnz():
    params, tree = transformer_tree(layers=2)
    qs = tuple(s for s in tree if s.params()[0].endswith((".q", ".k")))
    nnz = tuple(torch.tensor(i % 4 + 1) for i in range(len(qs)))
    with batching(True):
        bm = skf.block_masks(params, qs, nnz=nnz)
    assert [int(b.sum(-1).unique()) for b in bm] == [int(k) for k in nnz]


def test_empty_tree_and_non_spec_leaves_are_refused():
    with pytest.raises(skf.SpecError):
        skf.hard_threshold({}, (), nnz=1)
    with pytest.raises(skf.SpecError):
        skf.hard_threshold({}, ("w",), nnz=1)


@pytest.mark.parametrize("batched", [True, False])
def test_compiled_tree_equals_eager_with_and_without_batching(batched):
    params, tree = transformer_tree(layers=2) if batched else transformer_tree(layers=1)
    nnz = tuple([8] * (len(tree) // 7) + [2] * (len(tree) - len(tree) // 7))
    ref = skf.hard_threshold(params, tree, nnz=nnz)
    with batching(batched):
        out = torch.compile(lambda p: skf.hard_threshold(p, tree, nnz=nnz), fullgraph=True)(params)
    assert all(torch.equal(out[k], ref[k]) for k in params)


def _captured_targets(fn, *args):
    """Run ``fn`` under torch.compile with a backend that records the FX graph's call targets."""
    seen = []

    def backend(gm, example_inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm.forward

    torch._dynamo.reset()
    out = torch.compile(fn, backend=backend, fullgraph=True)(*args)
    return out, seen


@pytest.mark.parametrize("batched", [True, False])
def test_a_later_level_alone_in_its_group_reads_a_materialised_input(batched):
    # Channels of fc1/fc2 (level 0), then 2:4 on each (level 1, alone in its layout group
    # unless batched: the two shapes differ). The opaque copy keeps Inductor from inlining
    # level 0's selection into every read of level 1; batched groups get it from their stack.
    torch.manual_seed(0)
    params = {"fc1": torch.randn(8, 4), "fc2": torch.randn(4, 8)}
    chan = ScopeSpec(BlockCoupling((BlockSpec(View("fc1", (8, 4)), (1, -1)),
                                    BlockSpec(View("fc2", (4, 8)), (-1, 1))), ((0, 1), (1, 0))), ())
    tree = (chan,) + tuple(ScopeSpec(BlockSpec(View(n, tuple(p.shape)), (1, 1)), (1, 4)) for n, p in params.items())
    nnz = (torch.tensor(4), torch.tensor(2), torch.tensor(2))
    with batching(batched):
        out, targets = _captured_targets(lambda p, k: skf.hard_threshold(p, tree, nnz=k), params, nnz)
        eager = skf.hard_threshold(params, tree, nnz=nnz)
    materialised = sum("materialise" in t for t in targets)
    assert materialised == 2  # fc1 and fc2: their 2:4 specs differ in shape, so each is alone
    for name in params:
        torch.testing.assert_close(out[name], eager[name], rtol=0, atol=0)


def test_nothing_is_materialised_eagerly_or_for_the_first_level():
    params = {"w": torch.randn(4, 8)}
    spec = ScopeSpec(BlockSpec(View("w", (4, 8)), (1, 1)), (1, 4))
    _, targets = _captured_targets(lambda p: skf.hard_threshold(p, spec, nnz=2), params)
    assert not any("materialise" in t for t in targets)
